"""
The sandbox API server, as the real ``kubernetes`` client (v37) sees it over HTTP.

Each test pins one behaviour that kopf or the client relies on and that stock kmock
lacks (see /work/shared/TESTING.md), plus the helpers and the command line.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, TypeAlias

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from linepool.sandbox.apiserver import ApiServerThread, make_emulator

GROUP, VERSION, PLURAL = 'linepool.dev', 'v1alpha1', 'linepools'

# The client (v37) types custom objects as plain `object` and insists on model classes for
# built-ins; the tests index into the returned dicts and pass dicts, so they see the APIs as Any.
CustomObjectsApi: TypeAlias = Any
CoreV1Api: TypeAlias = Any


def linepool(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        'apiVersion': f'{GROUP}/{VERSION}',
        'kind': 'LinePool',
        'metadata': {'name': name, 'labels': labels or {}},
        'spec': spec or {'size': 1},
    }


def create(api: CustomObjectsApi, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = api.create_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, body)
    return result


def watch_events(server: ApiServerThread, path: str, **params: str) -> list[dict[str, Any]]:
    """Read a watch-stream until the server ends it (pass timeoutSeconds to bound it)."""
    query = urllib.parse.urlencode({'watch': 'true', **params})
    with urllib.request.urlopen(f"{server.url}{path}?{query}", timeout=10) as response:
        return [json.loads(line) for line in response.read().splitlines() if line.strip()]


def test_create_answers_201_with_server_owned_metadata(custom_api: CustomObjectsApi) -> None:
    body, status, _ = custom_api.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, 'default', PLURAL, linepool('p1'))
    assert status == 201
    meta = body['metadata']
    assert meta['name'] == 'p1'
    assert meta['namespace'] == 'default'
    assert len(meta['uid']) == 36
    assert meta['resourceVersion'].isdigit()
    assert meta['generation'] == 1
    assert meta['creationTimestamp'].endswith('Z')
    assert body['kind'] == 'LinePool' and body['apiVersion'] == f'{GROUP}/{VERSION}'


def test_create_of_an_existing_name_is_409(custom_api: CustomObjectsApi) -> None:
    create(custom_api, linepool('p1'))
    with pytest.raises(ApiException) as excinfo:
        create(custom_api, linepool('p1'))
    assert excinfo.value.status == 409
    assert json.loads(excinfo.value.body or '{}')['reason'] == 'AlreadyExists'


def test_create_drops_status_when_it_is_a_subresource(custom_api: CustomObjectsApi) -> None:
    created = create(custom_api, {**linepool('p1'), 'status': {'phase': 'Ready'}})
    assert 'status' not in created


def test_merge_patch_of_spec_bumps_generation_and_keeps_identity(
        custom_api: CustomObjectsApi,
) -> None:
    created = create(custom_api, linepool('p1', size=1, mode='a'))
    patched = custom_api.patch_namespaced_custom_object(
        GROUP, VERSION, 'default', PLURAL, 'p1', {'spec': {'size': 2, 'mode': None}})
    assert patched['spec'] == {'size': 2}  # RFC 7386: null deletes
    assert patched['metadata']['generation'] == 2
    assert int(patched['metadata']['resourceVersion']) > int(created['metadata']['resourceVersion'])
    assert patched['metadata']['uid'] == created['metadata']['uid']
    assert patched['metadata']['creationTimestamp'] == created['metadata']['creationTimestamp']


def test_metadata_patch_does_not_bump_generation(custom_api: CustomObjectsApi) -> None:
    create(custom_api, linepool('p1'))
    patched = custom_api.patch_namespaced_custom_object(
        GROUP, VERSION, 'default', PLURAL, 'p1', {'metadata': {'annotations': {'a': 'b'}}})
    assert patched['metadata']['generation'] == 1
    assert patched['metadata']['annotations'] == {'a': 'b'}


def test_noop_patch_keeps_the_resource_version(custom_api: CustomObjectsApi) -> None:
    created = create(custom_api, linepool('p1', size=1))
    patched = custom_api.patch_namespaced_custom_object(
        GROUP, VERSION, 'default', PLURAL, 'p1', {'spec': {'size': 1}})
    assert patched['metadata']['resourceVersion'] == created['metadata']['resourceVersion']


def test_status_is_separate_from_the_main_resource(custom_api: CustomObjectsApi) -> None:
    create(custom_api, linepool('p1', size=1))

    # A write to /status changes the status only, and does not bump the generation.
    patched = custom_api.patch_namespaced_custom_object_status(
        GROUP, VERSION, 'default', PLURAL, 'p1', {'spec': {'size': 9}, 'status': {'phase': 'Ready'}})
    assert patched['status'] == {'phase': 'Ready'}
    assert patched['spec'] == {'size': 1}
    assert patched['metadata']['generation'] == 1

    # A write to the main resource cannot change the status.
    patched = custom_api.patch_namespaced_custom_object(
        GROUP, VERSION, 'default', PLURAL, 'p1', {'spec': {'size': 2}, 'status': {'phase': 'Hacked'}})
    assert patched['status'] == {'phase': 'Ready'}
    assert patched['spec'] == {'size': 2}
    assert patched['metadata']['generation'] == 2


def test_json_patch_with_a_failed_test_is_422(custom_api: CustomObjectsApi) -> None:
    created = create(custom_api, linepool('p1'))
    rv = created['metadata']['resourceVersion']
    add_finalizer = {'op': 'add', 'path': '/metadata/finalizers', 'value': ['x/y']}

    with pytest.raises(ApiException) as excinfo:
        custom_api.patch_namespaced_custom_object(
            GROUP, VERSION, 'default', PLURAL, 'p1',
            [{'op': 'test', 'path': '/metadata/resourceVersion', 'value': str(int(rv) + 100)}, add_finalizer],
            _content_type='application/json-patch+json')
    assert excinfo.value.status == 422

    # The same patch with the right version goes through: this is how kopf adds finalizers.
    patched = custom_api.patch_namespaced_custom_object(
        GROUP, VERSION, 'default', PLURAL, 'p1',
        [{'op': 'test', 'path': '/metadata/resourceVersion', 'value': rv}, add_finalizer],
        _content_type='application/json-patch+json')
    assert patched['metadata']['finalizers'] == ['x/y']


def test_json_patch_of_a_missing_path_is_422(custom_api: CustomObjectsApi) -> None:
    create(custom_api, linepool('p1'))
    with pytest.raises(ApiException) as excinfo:
        custom_api.patch_namespaced_custom_object(
            GROUP, VERSION, 'default', PLURAL, 'p1', [{'op': 'remove', 'path': '/spec/nope'}],
            _content_type='application/json-patch+json')
    assert excinfo.value.status == 422


def test_unknown_patch_type_is_415(apiserver: ApiServerThread) -> None:
    apiserver.apply(linepool('p1'))
    # The client refuses to send unknown content types itself, so speak HTTP directly.
    request = urllib.request.Request(
        f"{apiserver.url}/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}/p1",
        data=b'{"spec": {}}', method='PATCH', headers={'Content-Type': 'application/x-nonsense'})
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request, timeout=5)
    assert excinfo.value.code == 415


def test_put_replaces_and_a_stale_version_is_409(custom_api: CustomObjectsApi) -> None:
    created = create(custom_api, linepool('p1', size=1))
    stale = dict(created, spec={'size': 5})

    replaced = custom_api.replace_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'p1', stale)
    assert replaced['spec'] == {'size': 5}
    assert replaced['metadata']['generation'] == 2

    # The same body again carries the old resourceVersion: optimistic concurrency says no.
    with pytest.raises(ApiException) as excinfo:
        custom_api.replace_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'p1', stale)
    assert excinfo.value.status == 409
    assert json.loads(excinfo.value.body or '{}')['reason'] == 'Conflict'


def test_put_to_status_changes_only_the_status(custom_api: CustomObjectsApi) -> None:
    created = create(custom_api, linepool('p1', size=1))
    body = dict(created, spec={'size': 7}, status={'phase': 'Ready'})
    replaced = custom_api.replace_namespaced_custom_object_status(GROUP, VERSION, 'default', PLURAL, 'p1', body)
    assert replaced['status'] == {'phase': 'Ready'}
    assert replaced['spec'] == {'size': 1}
    assert replaced['metadata']['generation'] == 1


def test_list_has_kind_api_version_and_resource_version(
        apiserver: ApiServerThread, custom_api: CustomObjectsApi,
) -> None:
    create(custom_api, linepool('p1'))
    listing = custom_api.list_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL)
    assert listing['kind'] == 'LinePoolList'
    assert listing['apiVersion'] == f'{GROUP}/{VERSION}'
    assert listing['metadata']['resourceVersion'] == str(apiserver.emulator.resource_version)
    assert [item['metadata']['name'] for item in listing['items']] == ['p1']


@pytest.mark.parametrize(('selector', 'expected'), [
    ('tier=gold', ['a']),
    ('tier==gold', ['a']),
    ('tier!=gold', ['b', 'c']),
    ('tier in (gold,silver)', ['a', 'b']),
    ('tier notin (gold)', ['b', 'c']),
    ('tier', ['a', 'b']),
    ('!tier', ['c']),
    ('tier,region=eu', ['a']),
])
def test_label_selectors_filter_lists(
        custom_api: CustomObjectsApi, selector: str, expected: list[str],
) -> None:
    create(custom_api, linepool('a', {'tier': 'gold', 'region': 'eu'}))
    create(custom_api, linepool('b', {'tier': 'silver', 'region': 'us'}))
    create(custom_api, linepool('c', {'region': 'eu'}))
    listing = custom_api.list_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, label_selector=selector)
    assert sorted(item['metadata']['name'] for item in listing['items']) == expected


def test_field_selectors_filter_lists(custom_api: CustomObjectsApi) -> None:
    create(custom_api, linepool('a'))
    create(custom_api, linepool('b'))
    by_name = custom_api.list_cluster_custom_object(GROUP, VERSION, PLURAL, field_selector='metadata.name=b')
    assert [item['metadata']['name'] for item in by_name['items']] == ['b']
    others = custom_api.list_cluster_custom_object(
        GROUP, VERSION, PLURAL, field_selector='metadata.namespace=default,metadata.name!=b')
    assert [item['metadata']['name'] for item in others['items']] == ['a']


def test_bad_selector_is_400(custom_api: CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as excinfo:
        custom_api.list_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, label_selector='a in (b')
    assert excinfo.value.status == 400


def test_watch_resumes_from_a_version_and_applies_selectors(
        apiserver: ApiServerThread, custom_api: CustomObjectsApi,
) -> None:
    create(custom_api, linepool('a', {'tier': 'gold'}))
    create(custom_api, linepool('b', {'tier': 'silver'}))
    since = custom_api.list_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL)['metadata']['resourceVersion']

    def relabel(name: str, tier: str) -> None:
        custom_api.patch_namespaced_custom_object(
            GROUP, VERSION, 'default', PLURAL, name, {'metadata': {'labels': {'tier': tier}}})

    relabel('b', 'gold')  # enters the selector: ADDED
    relabel('a', 'silver')  # leaves the selector: DELETED
    custom_api.patch_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'a', {'spec': {'size': 3}})

    path = f'/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}'
    resumed = watch_events(apiserver, path, labelSelector='tier=gold', resourceVersion=since, timeoutSeconds='1')
    assert [(e['type'], e['object']['metadata']['name']) for e in resumed] == [('ADDED', 'b'), ('DELETED', 'a')]

    fresh = watch_events(apiserver, path, labelSelector='tier=gold', timeoutSeconds='1')
    assert [(e['type'], e['object']['metadata']['name']) for e in fresh] == [('ADDED', 'b')]


def test_live_watch_with_the_kubernetes_client(
        apiserver: ApiServerThread, custom_api: CustomObjectsApi,
) -> None:
    create(custom_api, linepool('before'))
    seen: list[tuple[str, str]] = []
    watch: Any = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]  # the watch module is untyped

    def consume() -> None:
        for event in watch.stream(custom_api.list_namespaced_custom_object, GROUP, VERSION, 'default', PLURAL,
                                  label_selector='tier=gold', timeout_seconds=5):
            seen.append((event['type'], event['object']['metadata']['name']))
            if len(seen) == 2:
                watch.stop()

    consumer = threading.Thread(target=consume)
    consumer.start()
    time.sleep(0.2)  # let the watch connect; objects created before it arrive as ADDED anyway
    apiserver.apply(linepool('silver', {'tier': 'silver'}))
    apiserver.apply(linepool('gold', {'tier': 'gold'}))
    apiserver.delete(PLURAL, 'default', 'gold')
    consumer.join(5)
    assert not consumer.is_alive()
    assert seen == [('ADDED', 'gold'), ('DELETED', 'gold')]


def test_watch_from_a_forgotten_version_is_410() -> None:
    emulator = make_emulator()
    emulator.watch_log_size = 2
    with ApiServerThread(emulator) as server:
        for name in ['a', 'b', 'c', 'd']:
            server.apply(linepool(name))
        events = watch_events(server, f'/apis/{GROUP}/{VERSION}/{PLURAL}', resourceVersion='1')
    assert [(e['type'], e['object']['code']) for e in events] == [('ERROR', 410)]


def test_generate_name_gives_unique_names(core_api: CoreV1Api) -> None:
    names = []
    for _ in range(2):
        event = core_api.create_namespaced_event('default', {
            'metadata': {'generateName': 'kopf-event-'},
            'involvedObject': {'kind': 'LinePool', 'name': 'p1', 'namespace': 'default'},
            'reason': 'Testing', 'message': 'hello', 'type': 'Normal',
        })
        names.append(event.metadata.name)
    assert all(name.startswith('kopf-event-') and len(name) == len('kopf-event-') + 5 for name in names)
    assert names[0] != names[1]


def test_deletion_waits_for_finalizers(
        apiserver: ApiServerThread, custom_api: CustomObjectsApi,
) -> None:
    create(custom_api, {**linepool('p1'), 'metadata': {'name': 'p1', 'finalizers': ['x/y']}})
    marked = custom_api.delete_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'p1')
    assert marked['metadata']['deletionTimestamp'].endswith('Z')
    assert apiserver.get(PLURAL, 'default', 'p1') is not None

    custom_api.patch_namespaced_custom_object(
        GROUP, VERSION, 'default', PLURAL, 'p1', {'metadata': {'finalizers': None}})
    assert apiserver.get(PLURAL, 'default', 'p1') is None
    with pytest.raises(ApiException) as excinfo:
        custom_api.get_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'p1')
    assert excinfo.value.status == 404


def test_write_counters_by_resource_and_subresource(
        apiserver: ApiServerThread, custom_api: CustomObjectsApi,
) -> None:
    apiserver.apply(linepool('direct'))  # helpers are not API writes: not counted
    create(custom_api, linepool('p1'))
    custom_api.patch_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL, 'p1', {'spec': {'size': 2}})
    custom_api.patch_namespaced_custom_object_status(GROUP, VERSION, 'default', PLURAL, 'p1', {'status': {'a': 1}})
    custom_api.patch_namespaced_custom_object_status(GROUP, VERSION, 'default', PLURAL, 'p1', {'status': {'a': 2}})
    custom_api.list_namespaced_custom_object(GROUP, VERSION, 'default', PLURAL)  # reads are not writes

    assert apiserver.write_count() == 4
    assert apiserver.write_count(PLURAL) == 4
    assert apiserver.write_count(PLURAL, subresource='status') == 2
    assert apiserver.write_count(PLURAL, subresource=None) == 2
    assert apiserver.write_count(PLURAL, method='POST') == 1
    assert apiserver.write_count('events') == 0
    assert {record.user_agent for record in apiserver.emulator.write_log()} == {'OpenAPI-Generator/37.0.2/python'}

    apiserver.reset_counters()
    assert apiserver.write_count() == 0


def test_answered_requests_are_forgotten_unless_asked() -> None:
    # kmock matches each request against all past ones: keeping them would make a long demo crawl.
    emulator = make_emulator()
    with ApiServerThread(emulator) as server:
        for name in ['a', 'b']:
            server.apply(linepool(name))
        urllib.request.urlopen(f"{server.url}/apis/{GROUP}/{VERSION}/{PLURAL}", timeout=5).read()
        assert list(emulator) == []

    emulator = make_emulator()
    emulator.keep_requests = True
    with ApiServerThread(emulator) as server:
        urllib.request.urlopen(f"{server.url}/apis/{GROUP}/{VERSION}/{PLURAL}", timeout=5).read()
        assert [request.url.path for request in emulator] == [f"/apis/{GROUP}/{VERSION}/{PLURAL}"]


def test_helpers_apply_get_list_delete(apiserver: ApiServerThread) -> None:
    created = apiserver.apply(linepool('p1', {'tier': 'gold'}, size=1))
    assert created['metadata']['namespace'] == 'default'
    updated = apiserver.apply(linepool('p1', {'tier': 'gold'}, size=2))
    assert updated['spec'] == {'size': 2}
    assert updated['metadata']['generation'] == 2
    assert updated['metadata']['uid'] == created['metadata']['uid']

    status = apiserver.patch_status(PLURAL, 'default', 'p1', {'phase': 'Ready'})
    assert status['status'] == {'phase': 'Ready'}

    assert [obj['metadata']['name'] for obj in apiserver.list(PLURAL)] == ['p1']
    assert apiserver.list(PLURAL, 'elsewhere') == []
    assert apiserver.delete(PLURAL, 'default', 'p1') is True
    assert apiserver.get(PLURAL, 'default', 'p1') is None
    assert apiserver.delete(PLURAL, 'default', 'p1') is False


def test_cluster_scoped_resources_have_no_namespace(apiserver: ApiServerThread) -> None:
    peering = apiserver.apply({
        'apiVersion': 'kopf.dev/v1', 'kind': 'ClusterKopfPeering', 'metadata': {'name': 'default'}})
    assert 'namespace' not in peering['metadata']
    assert apiserver.get('clusterkopfpeerings', None, 'default') is not None


def test_secret_string_data_is_stored_as_base64_data(apiserver: ApiServerThread) -> None:
    secret = apiserver.apply({
        'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': 's', 'namespace': 'default'},
        'stringData': {'token': 'abc'}})
    assert secret['data'] == {'token': 'YWJj'}
    assert 'stringData' not in secret


def test_standalone_command_line_serves_until_sigterm(tmp_path: pathlib.Path) -> None:
    kubeconfig = tmp_path / 'kubeconfig'
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(__file__).parents[2] / 'operator'))
    process = subprocess.Popen(
        [sys.executable, '-m', 'linepool.sandbox.apiserver', '--kubeconfig', str(kubeconfig)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith('sandbox API server listening on http://127.0.0.1:')
        url = line.rsplit(' ', 1)[-1].strip()
        assert json.loads(kubeconfig.read_text())['clusters'][0]['cluster']['server'] == url

        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), client_configuration=configuration)
        with kubernetes.client.ApiClient(configuration) as client:
            core_api: CoreV1Api = kubernetes.client.CoreV1Api(client)
            namespaces = core_api.list_namespace()
        assert [namespace.metadata.name for namespace in namespaces.items] == ['default']
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
