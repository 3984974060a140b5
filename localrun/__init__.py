"""Run the migration DAG locally: Airflow on this machine, the cluster twin, and a REST driver for approvals."""
