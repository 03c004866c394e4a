"""Output formats: each module's pure ``encode(record) -> bytes`` gives one JSON document.

- ``native``: the audit.k8s.io/v1 Event as kube-apiserver's log backend writes it;
- ``ocsf``: OCSF API Activity (class 6003), schema version pinned in ocsf.py;
- ``ecs``: Elastic Common Schema, as Elastic's Kubernetes audit integration maps it.
"""
