"""Live migration of an EKS cluster from the AWS VPC CNI to Cilium (node-pool strategy, per the runbook).

Modules are named after the runbook's nouns; heavy libraries (kubernetes, boto3, airflow) are imported
lazily inside functions, so importing this package is cheap and safe at DAG parse time.
"""
