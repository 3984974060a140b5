# The Airflow image for docker-compose.yaml: the official Airflow 3 image plus this project's requirements.
# The Cilium chart is rendered by the Helm engine bundled in helm-python-sdk (no helm binary needed).
FROM apache/airflow:3.3.2-python3.11

USER airflow
COPY --chown=airflow:root requirements.txt requirements-deploy.txt /opt/project/
RUN pip install --no-cache-dir "apache-airflow==3.3.2" \
        -r /opt/project/requirements.txt -r /opt/project/requirements-deploy.txt \
        awscli  # the `aws eks get-token` exec plugin of EKS kubeconfigs
