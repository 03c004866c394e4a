"""``auditsink rbac suggest|diff``: least privilege from the requests identities made (issue 14).

Thin over :mod:`auditsink.rbac`; docs/rbac.md has the semantics and a worked example.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import click

from auditsink.admit.sources import iter_file_items
from auditsink.cli.group import main
from auditsink.cli.common import SELECTOR_FLAGS, config_option, open_existing_store, store_option
from auditsink.model import BadItem
from auditsink.rbac import stored
from auditsink.rbac.diff import diff_subject, render_text
from auditsink.rbac.granted import GrantedError, Snapshot, read_cluster, read_files
from auditsink.rbac.identity import Identity
from auditsink.rbac.render import render
from auditsink.rbac.request import Observed, observe, observe_raw
from auditsink.rbac.suggest import SuggestOptions, suggest
from auditsink.selector import Selector, SelectorError
from auditsink.store.base import Store, StoreError, open_store
from auditsink.timeutil import format_micros, parse_when

F = Callable[..., Any]
# --user and --group name the identity here, so they are not selector flags.
_IDENTITY_FLAGS = ("user", "group")
_FLAGS = [entry for entry in SELECTOR_FLAGS if entry[0] not in _IDENTITY_FLAGS]


def _identity_options(f: F) -> F:
    f = click.option("--group", "groups", multiple=True, metavar="NAME",
                     help="Requests of members of this group; binds the Group (repeatable).")(f)
    f = click.option("--user", "users", multiple=True, metavar="NAME",
                     help="Requests acting as this user (repeatable).")(f)
    return click.option("--serviceaccount", "serviceaccounts", multiple=True, metavar="NS:NAME",
                        help="Requests acting as this service account (repeatable).")(f)


def _event_options(f: F) -> F:
    """EVENT_FILES or the store, with the selector flags (not --user/--group) for the store."""
    for flag, dest, help_text in reversed(_FLAGS):
        f = click.option(f"--{flag}", dest, multiple=True, help=help_text)(f)
    f = click.option("--until", help="Only events before: 2h (ago) or RFC 3339.")(f)
    f = click.option("--since", help="Only events after: 30m, 2h, 7d (ago) or RFC 3339.")(f)
    f = store_option(f)
    f = config_option(f)
    return click.argument("event_files", nargs=-1,
                          type=click.Path(exists=True, dir_okay=False))(f)


def _identities(kwargs: dict[str, Any]) -> list[Identity]:
    try:
        found = [Identity.parse_serviceaccount(s) for s in kwargs.pop("serviceaccounts", ())]
        found += [Identity.user(u) for u in kwargs.pop("users", ())]
        found += [Identity.group(g) for g in kwargs.pop("groups", ())]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return sorted(set(found))


def _selector(kwargs: dict[str, Any]) -> tuple[Selector, str]:
    """The store selector and how the command line chose it (for the YAML header)."""
    values = {dest: list(kwargs.pop(dest, ()) or ()) for _, dest, _ in _FLAGS}
    selector = Selector()
    for dest, given in values.items():
        setattr(selector, dest, given)
    said = [f"--{flag} {v}" for flag, dest, _ in _FLAGS for v in values[dest]]
    since, until = kwargs.pop("since", None), kwargs.pop("until", None)
    try:
        selector.since = parse_when(since) if since else None
        selector.until = parse_when(until) if until else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    said = ([f"--since {since}"] if since else []) + ([f"--until {until}"] if until else []) + said
    return selector, " ".join(said) or "every stored event"


def _observe(event_files: tuple[str, ...], store_url: str, kwargs: dict[str, Any],
             identities: list[Identity]) -> tuple[dict[Identity, Observed], str]:
    selector, said = _selector(kwargs)
    if event_files:
        if said != "every stored event":
            raise click.UsageError("selector flags choose stored events; with EVENT_FILES every "
                                   "event in the files is read")
        bad: list[BadItem] = []

        def items() -> Iterator[tuple[str, bytes]]:
            for item in iter_file_items(event_files, bad):
                yield "", item.raw

        found = observe_raw(items(), identities)
        if bad:
            click.echo(f"skipped {len(bad)} undecodable event(s); first: {bad[0].error}", err=True)
        return found, "events in " + ", ".join(event_files)
    store = open_existing_store(store_url)
    try:
        return observe(store, selector, identities), said
    except SelectorError as exc:
        raise click.BadParameter(str(exc)) from None


def _one_cluster(found: dict[Identity, Observed]) -> None:
    clusters = sorted({c for o in found.values() for c in o.clusters})
    if len(clusters) > 1:
        names = ", ".join(c or "(unnamed)" for c in clusters)
        raise click.UsageError(f"the events come from {len(clusters)} clusters ({names}): "
                               "RBAC is per cluster, pass --cluster NAME")


@main.group()
def rbac() -> None:
    """Least-privilege RBAC from the requests identities made, and what is granted but unused."""


@rbac.command("suggest")
@_identity_options
@_event_options
@click.option("--no-expand-verbs", is_flag=True,
              help="Grant only the verbs used (by default list adds get,watch; watch adds "
                   "get,list; update adds get,patch; patch adds get,update).")
@click.option("--keep-names", is_flag=True,
              help="Keep every resource name used (by default an operation done on several "
                   "names holds for any name).")
@click.option("--cluster-wide-after", type=click.IntRange(min=1), metavar="N",
              help="Grant an operation in every namespace (ClusterRole) once it was used in more "
                   "than N namespaces. Default: never, a Role per namespace.")
@click.option("--only-allowed", is_flag=True,
              help="Leave out denied requests (by default they are included: that is how "
                   "missing grants are learnt).")
@click.option("--prefix", default="auditsink", show_default=True,
              help="Start of the generated object names.")
def suggest_command(event_files: tuple[str, ...], store_url: str, no_expand_verbs: bool,
                    keep_names: bool, cluster_wide_after: int | None, only_allowed: bool,
                    prefix: str, **kwargs: Any) -> None:
    """Roles, ClusterRoles and bindings (YAML for `kubectl apply -f -`) that allow what each
    identity did, from the store or from EVENT_FILES (audit logs, EventLists, webhook bodies).

    \b
      auditsink rbac suggest --serviceaccount work:robot --since 7d | kubectl apply -f -
      auditsink rbac suggest --user alice --namespace demo --only-allowed
      auditsink rbac suggest --group dev-team audit.log
    """
    identities = _identities(kwargs)
    if not identities:
        raise click.UsageError("name an identity: --serviceaccount NS:NAME, --user NAME or "
                               "--group NAME")
    found, said = _observe(event_files, store_url, kwargs, identities)
    _one_cluster(found)
    if not any(o.calls for o in found.values()):
        names = ", ".join(i.label() for i in identities)
        raise click.ClickException(f"no requests of {names} in {said}")
    options = SuggestOptions(expand_verbs=not no_expand_verbs, keep_names=keep_names,
                             cluster_wide_after=cluster_wide_after, only_allowed=only_allowed,
                             prefix=prefix)
    click.echo(render([suggest(found[i], options) for i in identities], said), nl=False)


@rbac.command("diff")
@_identity_options
@_event_options
@click.option("--granted", "granted_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="RBAC objects as `kubectl get roles,clusterroles,rolebindings,"
                   "clusterrolebindings -A -o yaml` writes them (repeatable).")
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False),
              help="Read what is granted from the live cluster of this kubeconfig's context.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def diff_command(event_files: tuple[str, ...], store_url: str, granted_files: tuple[str, ...],
                 kubeconfig: str | None, fmt: str, **kwargs: Any) -> None:
    """For each binding subject (or the identities named): what it was granted and did not
    use in the window, the wildcards it holds, its used/granted ratio and what it was denied.

    What is granted comes from --granted, --kubeconfig, or (with neither) the snapshot
    `auditsink rbac load` kept in the store for the cluster.

    \b
      kubectl get roles,clusterroles,rolebindings,clusterrolebindings -A -o yaml > rbac.yaml
      auditsink rbac diff --granted rbac.yaml --since 30d
      auditsink rbac diff --kubeconfig ~/.kube/config --serviceaccount work:robot --format json
    """
    if granted_files and kubeconfig:
        raise click.UsageError("--granted and --kubeconfig are two answers to one question: "
                               "pass one")
    if granted_files or kubeconfig:
        snapshot = load_granted(granted_files, kubeconfig)
        sources = snapshot.sources
    else:
        snapshot, sources = _stored_snapshot(store_url, kwargs.get("clusters", ()))
    identities = _identities(kwargs) or snapshot.subjects()
    found, _ = _observe(event_files, store_url, kwargs, identities)
    _one_cluster(found)
    diffs = [diff_subject(i, snapshot, found.get(i)) for i in identities]
    if fmt == "json":
        click.echo(json.dumps({"granted": sources,
                               "subjects": [d.to_dict() for d in diffs]}, indent=2))
    else:
        click.echo(render_text(diffs), nl=False)


@rbac.command("load")
@config_option
@store_option
@click.option("--granted", "granted_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="RBAC objects as `kubectl get roles,clusterroles,rolebindings,"
                   "clusterrolebindings -A -o yaml` writes them (repeatable).")
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False),
              help="Read them from the live cluster of this kubeconfig's context.")
@click.option("--cluster", default="", help="The cluster they are the RBAC of (as events "
              "name it; default: the unnamed one).")
def load_command(store_url: str, granted_files: tuple[str, ...], kubeconfig: str | None,
                 cluster: str) -> None:
    """Keep what is granted now in the store, for the web UI's user pages and `rbac diff`.

    Replaces the cluster's previous snapshot; run it again (from cron, or after RBAC changes)
    to refresh it.

    \b
      kubectl get roles,clusterroles,rolebindings,clusterrolebindings -A -o yaml > rbac.yaml
      auditsink rbac load --granted rbac.yaml
      auditsink rbac load --kubeconfig ~/.kube/config --cluster prod
    """
    if bool(granted_files) == bool(kubeconfig):
        raise click.UsageError("say what is granted: --granted FILE... or --kubeconfig FILE")
    snapshot = load_granted(granted_files, kubeconfig)
    store = _open_for_writing(store_url)
    try:
        size = stored.save(store, snapshot, format_micros(int(time.time() * 1_000_000)), cluster)
    finally:
        store.close()
    click.echo(f"kept {len(snapshot.objects)} RBAC objects ({len(snapshot.bindings)} bindings, "
               f"{len(snapshot.subjects())} subjects, {size:,} bytes) from "
               f"{', '.join(snapshot.sources)} as the granted snapshot of "
               f"{'cluster ' + cluster if cluster else 'the unnamed cluster'} in {store.url}")


def load_granted(files: tuple[str, ...] | list[str], kubeconfig: str | None) -> Snapshot:
    """A snapshot from files or a kubeconfig, errors as click errors."""
    try:
        return read_cluster(kubeconfig) if kubeconfig else read_files(files)
    except GrantedError as exc:
        raise click.ClickException(str(exc)) from None


def _stored_snapshot(store_url: str,
                     clusters: tuple[str, ...] | list[str]) -> tuple[Snapshot, list[str]]:
    if len(clusters) > 1:
        raise click.UsageError("a granted snapshot is one cluster's: pass one --cluster")
    cluster = clusters[0] if clusters else ""
    store = open_existing_store(store_url)
    try:
        kept = stored.load(store, cluster)
    except GrantedError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    if kept is None:
        raise click.UsageError(
            "say what is granted: --granted FILE... or --kubeconfig FILE (no snapshot of "
            f"{'cluster ' + cluster if cluster else 'the unnamed cluster'} was kept with "
            "`auditsink rbac load`)")
    return kept.snapshot, [f"{s} (loaded {kept.loaded})" for s in kept.sources]


def _open_for_writing(url: str) -> Store:
    open_existing_store(url).close()  # the same clear error when there is no store yet
    try:
        store = open_store(url)
        store.open()
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    return store
