"""``auditsink setup ...``: generate what a cluster needs to send audit events to auditsink.

Every command prints to stdout, or writes files with ``--out DIR`` (never overwriting without
``--force``), and says on stderr what to do next.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

import click

from auditsink.cli.group import main
from auditsink.receive.auth import CLUSTER_NAME, hash_password
from auditsink.setup import certs as certs_mod
from auditsink.setup import kubeadm as kubeadm_mod
from auditsink.setup import manifests as manifests_mod
from auditsink.setup.files import SetupError, write_files
from auditsink.setup.kubeconfig import Credential, read_pem, server_url, webhook_kubeconfig
from auditsink.setup.policy import PRESETS, policy_text

AUDIT_DIR = kubeadm_mod.AUDIT_DIR


def _next(text: str) -> None:
    click.echo(text.rstrip() + "\n", err=True)


def _emit(files: Mapping[str, str | bytes], out: str | None, force: bool) -> list[Path]:
    """Write ``files`` into ``out``, or print the single file to stdout."""
    if out is None:
        for content in files.values():
            click.echo(content if isinstance(content, str) else content.decode(), nl=False)
        return []
    try:
        written = write_files(Path(out), files, force=force)
    except SetupError as exc:
        raise click.ClickException(str(exc)) from None
    for path in written:
        click.echo(f"wrote {path}", err=True)
    return written


def _out_option(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option("--force", is_flag=True, help="Replace files that already exist.")(f)
    return click.option(
        "--out", type=click.Path(file_okay=False), help="Write files into this directory."
    )(f)


@main.group()
def setup() -> None:
    """Generate certificates, webhook kubeconfig, audit policy and manifests for a cluster."""


@setup.command()
@click.option(
    "--host",
    "hosts",
    multiple=True,
    required=True,
    help="DNS name or IP the API server uses to reach auditsink (repeatable; goes into the SANs).",
)
@click.option(
    "--client-cn",
    default="kube-apiserver",
    show_default=True,
    help="CN of the API server's client certificate (auditsink's --allowed-cn).",
)
@click.option(
    "--days",
    default=certs_mod.DEFAULT_LEAF_DAYS,
    show_default=True,
    help="Validity of the leaf certificates.",
)
@click.option(
    "--ca-days", default=certs_mod.DEFAULT_CA_DAYS, show_default=True, help="Validity of a new CA."
)
@click.option(
    "--ca-cert",
    type=click.Path(exists=True, dir_okay=False),
    help="Reuse this auditsink CA certificate...",
)
@click.option(
    "--ca-key",
    type=click.Path(exists=True, dir_okay=False),
    help="...and its key, instead of creating a CA.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Write files into this directory.",
)
@click.option("--force", is_flag=True, help="Replace files that already exist.")
def certs(
    hosts: tuple[str, ...],
    client_cn: str,
    days: int,
    ca_days: int,
    ca_cert: str | None,
    ca_key: str | None,
    out: str,
    force: bool,
) -> None:
    """A CA, auditsink's server certificate and the API server's client certificate."""
    if bool(ca_cert) != bool(ca_key):
        raise click.UsageError("--ca-cert and --ca-key go together")
    ca = None
    if ca_cert and ca_key:
        try:
            ca = certs_mod.load_key_pair(Path(ca_cert).read_bytes(), Path(ca_key).read_bytes())
        except ValueError as exc:
            raise click.ClickException(f"cannot load the CA: {exc}") from None
    try:
        files = certs_mod.generate_bundle(
            hosts, client_cn=client_cn, ca=ca, ca_days=ca_days, days=days
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _emit(files, out, force)
    _next(f"""
next: on each control-plane node
  - auditsink reads server.crt, server.key (and ca.crt for mTLS) from /etc/auditsink/
  - the API server reads ca.crt, {client_cn}.crt, {client_cn}.key from {AUDIT_DIR}/
then: auditsink setup webhook-config --host {hosts[0]} --ca {AUDIT_DIR}/ca.crt \\
        --client-cert {AUDIT_DIR}/{client_cn}.crt --client-key {AUDIT_DIR}/{client_cn}.key
Keep ca.key off the nodes: it is only needed to issue more certificates.""")


@setup.command("webhook-config")
@click.option(
    "--server",
    help="Full URL, e.g. https://127.0.0.1:8443/clusters/prod (or use --host/--port/--path).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Host auditsink listens on, as the API server reaches it.",
)
@click.option("--port", default=8443, show_default=True)
@click.option(
    "--path",
    "url_path",
    default="/",
    show_default=True,
    help="URL path; /clusters/NAME names the cluster.",
)
@click.option(
    "--ca", help=f"CA of auditsink's certificate, as a path on the node (e.g. {AUDIT_DIR}/ca.crt)."
)
@click.option(
    "--embed",
    is_flag=True,
    help="Read --ca/--client-cert/--client-key now and inline them (*-data).",
)
@click.option("--token", help="Bearer token the API server sends.")
@click.option(
    "--new-token",
    is_flag=True,
    help="Generate a token; with --out also write auditsink's 'tokens' file.",
)
@click.option(
    "--token-path",
    help="Write tokenFile: PATH instead of the token (client-go re-reads it every minute, so "
    "tokens rotate without an API server restart); with --out the token goes to DIR/token.",
)
@click.option("--username", help="Basic-auth user the API server sends.")
@click.option(
    "--password",
    help="Basic-auth password (prefer --new-password: nothing typed ends in shell history).",
)
@click.option(
    "--new-password",
    is_flag=True,
    help="Generate a password; with --out also write 'basic-auth' (bcrypt).",
)
@click.option("--client-cert", help="API server's client certificate (path on the node).")
@click.option("--client-key", help="Its private key (path on the node).")
@click.option(
    "--cluster",
    "cluster_name",
    default="",
    help="Cluster name bound to the generated token/password.",
)
@_out_option
def webhook_config(
    server: str | None,
    host: str,
    port: int,
    url_path: str,
    ca: str | None,
    embed: bool,
    token: str | None,
    new_token: bool,
    token_path: str | None,
    username: str | None,
    password: str | None,
    new_password: bool,
    client_cert: str | None,
    client_key: str | None,
    cluster_name: str,
    out: str | None,
    force: bool,
) -> None:
    """The kubeconfig for kube-apiserver's --audit-webhook-config-file."""
    if cluster_name and not CLUSTER_NAME.match(cluster_name):
        raise click.BadParameter(
            "letters, digits, '.', '_' or '-', at most 63", param_hint="--cluster"
        )
    if new_token:
        token = secrets.token_urlsafe(32)
    if new_password:
        username = username or "kube-apiserver"
        password = secrets.token_urlsafe(24)
    url = server or server_url(host, port, url_path)
    try:
        cred = Credential(
            token=None if token_path else token,
            token_file=token_path,
            username=username,
            password=password,
            client_cert=None if embed else client_cert,
            client_key=None if embed else client_key,
            client_cert_data=read_pem(client_cert) if embed and client_cert else None,
            client_key_data=read_pem(client_key) if embed and client_key else None,
        )
        ca_data = read_pem(ca) if embed and ca else None
        text = webhook_kubeconfig(url, cred, ca_file=None if embed else ca, ca_data=ca_data)
    except SetupError as exc:
        raise click.UsageError(str(exc)) from None
    files: dict[str, str] = {"webhook.yaml": text}
    suffix = f",{cluster_name}" if cluster_name else ""
    if token_path and token and out:
        files["token"] = token + "\n"
    if new_token and out:
        files["tokens"] = f"# auditsink --token-file: TOKEN[,CLUSTER]\n{token}{suffix}\n"
    if new_password and out:
        files["basic-auth"] = (
            f"# auditsink --basic-auth-file: USER:PASSWORD[:CLUSTER]\n"
            f"{username}:{hash_password(password or '')}{suffix.replace(',', ':')}\n"
        )
    _emit(files, out, force)
    if cred.empty:
        _next("warning: no credential: anything that can reach auditsink can send it events.")
    if (new_token or new_password) and not out:
        _next(
            "note: the generated secret is only in the kubeconfig above; use --out to also get "
            "auditsink's tokens/basic-auth file."
        )
    and_token = " and token" if token_path else ""
    _next(f"""
next: copy webhook.yaml{and_token} to {AUDIT_DIR}/ on each control-plane node (mode 0600),
      give auditsink the matching credential (--token-file / --basic-auth-file / --client-ca),
then: auditsink setup policy --out DIR && auditsink setup kubeadm""")


@setup.command()
@click.option(
    "--preset",
    type=click.Choice(PRESETS),
    default="detection",
    show_default=True,
    help="seed: the Kubernetes docs example; minimal: writes at Metadata; "
    "detection: the bodies rules need.",
)
@_out_option
def policy(preset: str, out: str | None, force: bool) -> None:
    """An audit policy for kube-apiserver's --audit-policy-file."""
    _emit({"policy.yaml": policy_text(preset)}, out, force)
    _next(
        f"next: copy it to {AUDIT_DIR}/policy.yaml on each control-plane node, "
        "then: auditsink setup kubeadm"
    )


@setup.command()
@click.argument(
    "manifest",
    default="/etc/kubernetes/manifests/kube-apiserver.yaml",
    type=click.Path(exists=True, dir_okay=False),
)
@click.option(
    "--apply",
    "apply_",
    is_flag=True,
    help="Edit MANIFEST in place (the old one is kept as .NAME.TIMESTAMP.bak).",
)
@click.option(
    "--audit-dir",
    default=AUDIT_DIR,
    show_default=True,
    help="Host directory mounted read-only into the pod.",
)
@click.option(
    "--no-log-backend",
    is_flag=True,
    help="Only the webhook: no --audit-log-path (CIS scanners then fail 1.2.16-1.2.19).",
)
@click.option(
    "--log-path",
    help=f"--audit-log-path [default: the manifest's own, else {kubeadm_mod.LOG_PATH}]; "
    "its directory is mounted read-write.",
)
@click.option(
    "--log-maxage",
    type=int,
    default=kubeadm_mod.CIS_LOG_MINIMUMS["maxage"],
    show_default=True,
    help="--audit-log-maxage: days to keep rotated files (CIS: >= 30).",
)
@click.option(
    "--log-maxbackup",
    type=int,
    default=kubeadm_mod.CIS_LOG_MINIMUMS["maxbackup"],
    show_default=True,
    help="--audit-log-maxbackup: rotated files to keep (CIS: >= 10).",
)
@click.option(
    "--log-maxsize",
    type=int,
    default=kubeadm_mod.CIS_LOG_MINIMUMS["maxsize"],
    show_default=True,
    help="--audit-log-maxsize: MB before the file rotates (CIS: >= 100).",
)
@click.option(
    "--batch-max-size",
    type=int,
    help="--audit-webhook-batch-max-size (events per POST; API server default 400).",
)
@click.option(
    "--initial-backoff",
    help="--audit-webhook-initial-backoff (Go duration; API server default 10s).",
)
@_out_option
def kubeadm(
    manifest: str,
    apply_: bool,
    audit_dir: str,
    no_log_backend: bool,
    log_path: str | None,
    log_maxage: int,
    log_maxbackup: int,
    log_maxsize: int,
    batch_max_size: int | None,
    initial_backoff: str | None,
    out: str | None,
    force: bool,
) -> None:
    """Add the audit flags and volumes to kubeadm's kube-apiserver static pod (prints a diff).

    Both backends by default: the webhook to auditsink, and the API server's own rotated log
    file with the rotation CIS benchmark scanners check.
    """
    if no_log_backend and log_path:
        raise click.UsageError("--log-path and --no-log-backend contradict each other")
    audit = kubeadm_mod.AuditFlags(
        policy_file=f"{audit_dir}/policy.yaml",
        webhook_config_file=f"{audit_dir}/webhook.yaml",
        batch_max_size=batch_max_size,
        initial_backoff=initial_backoff,
        host_dir=audit_dir,
        log_backend=not no_log_backend,
        log_path=log_path,
        log_maxage=log_maxage,
        log_maxbackup=log_maxbackup,
        log_maxsize=log_maxsize,
    )
    path = Path(manifest)
    backup = None
    try:
        if apply_:
            patch, backup = kubeadm_mod.apply_in_place(path, audit)
        else:
            patch = kubeadm_mod.patch_manifest(path.read_text(), audit)
    except SetupError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot edit {manifest}: {exc.strerror}") from None
    for note in patch.notes:
        _next(f"note: {note}")
    if not patch.changed:
        _next(f"{manifest} already has these audit settings; nothing to do.")
        return
    if out:
        _emit({path.name: patch.text}, out, force)
    elif not apply_:
        click.echo(patch.diff(str(path)), nl=False)
    if apply_:
        log_line = ""
        if patch.log_dir:
            log_line = (f"\nits own log: {patch.log_dir}/ (created by the kubelet), rotated at "
                        f"{log_maxsize} MB, {log_maxbackup} files kept for {log_maxage} days")
        _next(f"""patched {manifest} (previous version: {backup}){log_line}
next: the kubelet restarts the API server within a minute; check it with
        crictl ps --name kube-apiserver   and   crictl logs $(crictl ps -q --name kube-apiserver)
      {audit_dir}/policy.yaml and webhook.yaml must exist first,
      or the API server will not start.""")
    else:
        # The diff reviewed is the change applied only if the flags are the same.
        _next(
            "next: review the diff, then run the same command with --apply (as root) "
            f"to edit {manifest}"
        )


@setup.command()
@click.option(
    "--kind",
    type=click.Choice(["static-pod", "deployment", "systemd"]),
    default="static-pod",
    show_default=True,
)
@click.option(
    "--image",
    default=manifests_mod.RunOptions.image,
    show_default=True,
    help="auditsink container image.",
)
@click.option(
    "--listen-host",
    help="Address to listen on (static-pod/systemd default 127.0.0.1, deployment 0.0.0.0).",
)
@click.option("--port", default=8443, show_default=True)
@click.option(
    "--auth", type=click.Choice(["token", "basic", "mtls"]), default="token", show_default=True
)
@click.option(
    "--namespace", help="Namespace (static-pod default kube-system, deployment auditsink)."
)
@_out_option
def manifests(
    kind: str,
    image: str,
    listen_host: str | None,
    port: int,
    auth: str,
    namespace: str | None,
    out: str | None,
    force: bool,
) -> None:
    """Run auditsink: a static pod beside the API server, a Deployment, or a systemd unit."""
    central = kind == "deployment"
    opts = manifests_mod.RunOptions(
        image=image,
        listen_host=listen_host or ("0.0.0.0" if central else "127.0.0.1"),
        port=port,
        auth=auth,
        namespace=namespace or ("auditsink" if central else "kube-system"),
    )
    if kind == "static-pod":
        files = {"auditsink.yaml": manifests_mod.static_pod(opts)}
        step = (
            "next: put server.crt, server.key and your tokens file in /etc/auditsink/ "
            "(mode 0600) and copy "
            "auditsink.yaml to /etc/kubernetes/manifests/ on each control-plane node"
        )
    elif kind == "deployment":
        files = {"auditsink-deployment.yaml": manifests_mod.deployment(opts)}
        step = (
            f"next: kubectl create namespace {opts.namespace}; "
            f"kubectl -n {opts.namespace} create secret generic auditsink-config "
            "--from-file=DIR (server.crt, server.key, tokens); "
            "kubectl apply -f auditsink-deployment.yaml; "
            "the certificate's SANs must include the address API servers use"
        )
    else:
        files = {"auditsink.service": manifests_mod.systemd_unit(opts)}
        step = (
            "next: useradd --system auditsink; "
            "put the certificate files in /etc/auditsink/ readable by it; "
            "copy auditsink.service to /etc/systemd/system/; systemctl enable --now auditsink"
        )
    _emit(files, out, force)
    _next(step)
