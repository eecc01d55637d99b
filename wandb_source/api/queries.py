"""W&B's GraphQL documents, each beside the official client that sends the same request.

Only what an official client asks is asked here: the wandb SDK 0.31's public API (`wandb/apis/public/`,
`wandb/apis/_generated/operations.py`, `wandb/sdk/artifacts/_generated/operations.py`) and wandb-core's
GraphQL documents (`core/api/graphql/*.graphql` in the wandb repository). Field lists marked *optional*
are cut to what the server has (`WandbClient.fields`, from `ProbeServerCapabilities`): an older W&B
Server lacks recent fields, and an unknown field fails the whole query.
"""

from __future__ import annotations

# -- server ------------------------------------------------------------------------------------
# SDK `wandb.Api()` → `Viewer` (apis/public/api.py); a null viewer means the key was not accepted.
VIEWER = "query Viewer { viewer { id entity username } }"

# SDK `InternalApi.server_info_introspection` (sdk/internal/internal_api.py, `ProbeServerCapabilities`):
# the fields each type has on this server, one `__type` per type we select fields of.
PROBE_TYPES = ("Run", "Project", "Sweep", "Artifact")
_PROBED = "\n  ".join(f'{name}Type: __type(name: "{name}") {{ ...fieldData }}' for name in PROBE_TYPES)
PROBE = f"""query ProbeServerCapabilities {{
  {_PROBED}
}}
fragment fieldData on __Type {{ fields {{ name }} }}"""

# -- field lists -------------------------------------------------------------------------------
# The SDK's LIGHTWEIGHT_RUN_FRAGMENT (apis/public/runs.py) less user/commit, plus `eventsLineCount`
# (wandb-core's RunFragment) and `updatedAt` (selected by W&B's production clients, not the SDK:
# optional, and never trusted alone to say a run changed — see convert.runs.change_signature).
LISTING_FIELDS = ("name", "displayName", "state", "createdAt", "heartbeatAt", "updatedAt", "historyLineCount",
                  "eventsLineCount", "tags", "notes", "description", "group", "jobType", "sweepName")
# The SDK's RUN_FRAGMENT (full run objects, `lazy=False`).
RUN_FIELDS = ("id", "name", "displayName", "state", "config", "group", "jobType", "commit", "host", "createdAt",
              "heartbeatAt", "updatedAt", "description", "notes", "systemMetrics", "summaryMetrics",
              "historyLineCount", "eventsLineCount", "sweepName", "tags", "user { username }", "historyKeys")
REQUIRED_RUN_FIELDS = ("name",)
# The SDK's ProjectFragment (GetProjects) plus `description` (its CreatedProjectFragment).
PROJECT_FIELDS = ("id", "name", "entityName", "createdAt", "description")
# The SDK's SweepFragment (GetSweeps); an older server has only its LegacySweepFragment
# (id name state bestLoss config): the rest is optional.
SWEEP_FIELDS = ("id", "name", "displayName", "method", "state", "description", "bestLoss", "config", "createdAt",
                "updatedAt", "runCount", "runCountExpected")
# The SDK's ArtifactFragment (sdk/artifacts/_generated/operations.py, RUN_OUTPUT_ARTIFACTS_GQL).
ARTIFACT_FIELDS = ("id", "artifactSequence { name }", "versionIndex", "artifactType { name }", "description",
                   "metadata", "state", "size", "digest", "fileCount", "createdAt", "updatedAt", "aliases { alias }")

# -- documents ---------------------------------------------------------------------------------
# SDK `api.projects()` → GetProjects (apis/_generated/operations.py).
PROJECTS = """query GetProjects($entity: String, $cursor: String, $perPage: Int) {
  models(entityName: $entity, after: $cursor, first: $perPage) {
    pageInfo { endCursor hasNextPage }
    edges { node { %(fields)s } } } }"""

# SDK `api.runs(path, filters, order, per_page)` → Runs (apis/public/runs.py).
RUNS = """query Runs($entity: String!, $project: String!, $cursor: String, $perPage: Int,
    $filters: JSONString, $order: String) {
  project(name: $project, entityName: $entity) {
    runs(filters: $filters, after: $cursor, first: $perPage, order: $order) {
      pageInfo { endCursor hasNextPage }
      edges { node { %(fields)s } } } } }"""

# SDK `Run.files(names=[...])` (apis/public/files.py FILE_FRAGMENT): the field and its arguments are the SDK's.
# Nesting it under a page of runs named by an `$in` filter (as the SDK's reports name runs,
# apis/public/reports.py) is ours: the SDK asks one `run(name:)` at a time. Kept for one request per 50 runs
# instead of one per run; the API audit rates the nesting plausible, not confirmed.
RUN_FILES = "name files(names: %(names)s) { edges { node { name url directUrl sizeBytes } } }"

# SDK `Run.files(names=[...])` → RunFiles (apis/public/files.py), for one run: the logged tables' files, 50 names
# per request (the SDK's `per_page`).
RUN_FILES_OF_RUN = """query RunFiles($project: String!, $entity: String!, $name: String!, $fileCursor: String,
    $fileLimit: Int = 50, $fileNames: [String] = []) {
  project(name: $project, entityName: $entity) {
    run(name: $name) {
      files(names: $fileNames, after: $fileCursor, first: $fileLimit) {
        edges { node { name url directUrl sizeBytes } cursor }
        pageInfo { endCursor hasNextPage } } } } }"""

# SDK `Run.logged_artifacts()` / `Run.used_artifacts()` (RUN_OUTPUT_ARTIFACTS_GQL / RUN_INPUT_ARTIFACTS_GQL);
# nested under a page of runs as RUN_FILES is (ours), at most 100 artifact nodes a request like the SDK's page.
RUN_ARTIFACTS = ("name outputArtifacts(first: %(first)d) { %(connection)s } "
                 "inputArtifacts(first: %(first)d) { %(connection)s }")
MORE_ARTIFACTS = """query RunArtifacts($entity: String!, $project: String!, $run: String!, $cursor: String,
    $perPage: Int) {
  project(name: $project, entityName: $entity) {
    run(name: $run) { %(field)s(after: $cursor, first: $perPage) { %(connection)s } } } }"""
ARTIFACT_CONNECTION = "totalCount pageInfo { endCursor hasNextPage } edges { node { %(fields)s } }"

# wandb-core's artifact downloader (core/pkg/artifacts/downloader.go; documents in core/api/graphql/): an
# artifact's manifest file, then the download URLs of the entries it needs. ClientIDMapping is how
# core/pkg/artifacts/saver.go resolves a `wandb-client-artifact://<client id>/...` reference to the artifact.
CLIENT_ID_MAPPING = """query ClientIDMapping($clientID: ID!) {
  clientIDMapping(clientID: $clientID) { serverID } }"""
ARTIFACT_MANIFEST = """query ArtifactManifest($artifact_id: ID!) {
  artifact(id: $artifact_id) { currentManifest { file { directUrl } } } }"""
ARTIFACT_FILE_URLS = """query ArtifactFileURLsByManifestEntries($id: ID!, $entries: [ArtifactManifestEntryInput!],
    $storageLayout: String!, $manifestVersion: String!, $storageRegion: String) {
  artifact(id: $id) {
    filesByManifestEntries(storageLayout: $storageLayout, manifestVersion: $manifestVersion, entries: $entries,
        storageRegion: $storageRegion) {
      pageInfo { hasNextPage endCursor }
      edges { node { name directUrl } } } } }"""

# Many artifacts in one request: the field of one of the three documents above, exactly as wandb-core asks it,
# under one alias per artifact (`a0: artifact(id: $id0) {...}`). The aliasing is ours (wandb-core asks one
# artifact at a time); a server that refuses it gets the documents above, one per artifact.
CLIENT_ID_MAPPING_FIELD = ("clientIDMapping(clientID: $clientID%(i)d) { serverID }", {"clientID": "ID!"})
ARTIFACT_MANIFEST_FIELD = ("artifact(id: $artifact_id%(i)d) { currentManifest { file { directUrl } } }",
                           {"artifact_id": "ID!"})
ARTIFACT_FILE_URLS_FIELD = (
    "artifact(id: $id%(i)d) { filesByManifestEntries(storageLayout: $storageLayout%(i)d, manifestVersion: "
    "$manifestVersion%(i)d, entries: $entries%(i)d, storageRegion: $storageRegion%(i)d) { "
    "pageInfo { hasNextPage endCursor } edges { node { name directUrl } } } }",
    {"id": "ID!", "entries": "[ArtifactManifestEntryInput!]", "storageLayout": "String!", "manifestVersion": "String!",
     "storageRegion": "String"})


def aliased(operation: str, field: tuple[str, dict[str, str]], count: int) -> str:
    """`field` (a template and its variables' types) for `count` items, item i under the alias `a<i>`."""
    template, types = field
    variables = ", ".join(f"${name}{i}: {kind}" for i in range(count) for name, kind in types.items())
    fields = "\n  ".join(f"a{i}: " + template % {"i": i} for i in range(count))
    return f"query {operation}({variables}) {{\n  {fields} }}"


# wandb-core's history reader (core/internal/runhistoryreader): `RunParquetHistory` for the exported
# files and the steps not yet exported, then `HistoryPage` for those, in windows [minStep, maxStep)
# that never hold more rows than `samples` (wandb-core sends samples = maxStep - minStep).
PARQUET_HISTORY = """query RunParquetHistory($entity: String!, $project: String!, $run: String!) {
  project(name: $project, entityName: $entity) {
    run(name: $run) { parquetHistory(liveKeys: ["_step"]) { parquetUrls liveData } } } }"""
HISTORY_PAGE = """query HistoryPage($entity: String!, $project: String!, $run: String!,
    $minStep: Int64!, $maxStep: Int64!, $pageSize: Int!) {
  project(name: $project, entityName: $entity) {
    run(name: $run) { history(minStep: $minStep, maxStep: $maxStep, samples: $pageSize) } } }"""
# Several small runs in one request: RunParquetHistory's field and HistoryPage's first window, both exactly as
# above, repeated under one alias per run (`run0: run(name: $run0) {...}`). The aliasing is ours (the official
# readers ask one run at a time); every window still spans at most `$pageSize` steps, so it cannot hold more
# rows than `samples` and is never sampled. A server that refuses it gets the per-run documents instead.


def history_batch(count: int) -> str:
    """The `HistoryBatch` document for `count` runs (variables `$run<i>`, `$min<i>`, `$max<i>`)."""
    variables = ", ".join(f"$run{i}: String!, $min{i}: Int64!, $max{i}: Int64!" for i in range(count))
    fields = "\n    ".join(
        f'run{i}: run(name: $run{i}) {{ name parquetHistory(liveKeys: ["_step"]) {{ parquetUrls liveData }} '
        f"history(minStep: $min{i}, maxStep: $max{i}, samples: $pageSize) }}" for i in range(count))
    return f"""query HistoryBatch($entity: String!, $project: String!, $pageSize: Int!, {variables}) {{
  project(name: $project, entityName: $entity) {{
    {fields} }} }}"""


# SDK `Run.lastHistoryStep` reads `historyKeys.lastStep` of the Run query (apis/public/runs.py): the end of
# the history scan on a server without `parquetHistory`.
HISTORY_KEYS = """query RunHistoryKeys($entity: String!, $project: String!, $run: String!) {
  project(name: $project, entityName: $entity) { run(name: $run) { historyKeys } } }"""
# SDK `Run.history(stream="system")` → `events(samples:)` (apis/public/runs.py `_full_history`); sampled,
# so only the fallback when the run has no `wandb-events.jsonl` file.
EVENTS = """query RunEvents($entity: String!, $project: String!, $run: String!, $samples: Int) {
  project(name: $project, entityName: $entity) { run(name: $run) { events(samples: $samples) } } }"""
# Several finished runs' `events` in one request, one alias per run (ours, as `history_batch`); an answer
# is used only when it holds as many samples as the run's `eventsLineCount` (then it cannot be a sample).


def events_batch(count: int) -> str:
    """The `EventsBatch` document for `count` runs (variables `$run<i>`)."""
    variables = ", ".join(f"$run{i}: String!" for i in range(count))
    fields = "\n    ".join(f"run{i}: run(name: $run{i}) {{ name events(samples: $samples) }}" for i in range(count))
    return f"""query EventsBatch($entity: String!, $project: String!, $samples: Int, {variables}) {{
  project(name: $project, entityName: $entity) {{
    {fields} }} }}"""


# SDK `api.sweeps(path)` → GetSweeps (apis/_generated/operations.py).
SWEEPS = """query GetSweeps($entity: String!, $project: String!, $cursor: String, $perPage: Int) {
  project(name: $project, entityName: $entity) {
    sweeps(after: $cursor, first: $perPage) {
      pageInfo { endCursor hasNextPage }
      edges { node { %(fields)s } } } } }"""
