"""Least privilege from what was observed: RBAC suggestions and granted-versus-used (issue 14).

The pipeline reads top to bottom:

- :mod:`~auditsink.rbac.identity`: who acted (the impersonated user when there is one) and the
  binding subject for an identity;
- :mod:`~auditsink.rbac.request`: one audit event to the attributes RBAC authorizes, as
  audit2rbac derives them, and the store reader that collects them for a time window;
- :mod:`~auditsink.rbac.authorize`: RBAC's own matching rules, written once, used to skip what
  everyone already has, to check a suggestion, and to find granted-but-unused permissions;
- :mod:`~auditsink.rbac.suggest` and :mod:`~auditsink.rbac.compact`: requests to Roles and
  ClusterRoles with their bindings; :mod:`~auditsink.rbac.render`: the YAML ``kubectl apply``
  takes;
- :mod:`~auditsink.rbac.granted`: RBAC objects from files or a live cluster;
  :mod:`~auditsink.rbac.diff`: what each subject holds and never used.

docs/rbac.md describes the semantics and where they differ from audit2rbac's.
"""
