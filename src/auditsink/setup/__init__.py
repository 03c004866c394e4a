"""Generators for ``auditsink setup``: certificates, kubeconfig, policies, kubeadm, manifests.

Every generator is a pure function returning text or bytes; :mod:`auditsink.setup.files` writes
them, refusing to overwrite without ``force``.
"""
