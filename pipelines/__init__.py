"""Kubeflow pipelines of g2l: the DAG, its compile step, the local runner, submit and schedules."""
