#!/usr/bin/env node
// tests/mlflow_compat.js — kiln-tracking against an MLflow client nobody
// here wrote: the npm `mlflow` 2.0.7 package (a thin REST client for
// experiments, runs, metrics and artifacts listing).
//
//   node tests/mlflow_compat.js http://127.0.0.1:PORT
//
// Drives experiments (create, get, get-by-name, search, update, delete,
// restore, set tag) and runs (create, get, update, search with filters,
// log-metric, log-parameter, set-tag, delete-tag, log-batch, delete,
// restore, metric history, artifacts list), reading everything back and
// comparing values. Exits 1 with a message naming the first mismatch.
//
// The package is found at $KILN_MLFLOW_JS, else
// $KILN_SOURCE_DIR/.tools/node_modules/mlflow. Calls the package has no
// method for (get-by-name, search experiments) and the one it gets wrong
// (setExperimentTag misses a '/' in its path) go through the package's own
// request function, `req`, so they still travel through its transport.
// Artifacts are uploaded with fetch to the artifact proxy (the package
// only lists them).
'use strict';

const path = require('path');
const assert = require('assert');

const pkgDir = process.env.KILN_MLFLOW_JS ||
    path.join(process.env.KILN_SOURCE_DIR || path.join(__dirname, '..'),
              '.tools', 'node_modules', 'mlflow');
const MLflow = require(pkgDir);
const {ViewType, RunStatus} = require(path.join(pkgDir, 'enum'));

const uri = process.argv[2];
if (!uri || !/^http:\/\/127\.0\.0\.1:\d+$/.test(uri)) {
  console.error('usage: node mlflow_compat.js http://127.0.0.1:PORT');
  process.exit(2);
}

// The package logs every POST body with console.log; keep stdout for ours.
const say = (...a) => process.stdout.write(a.join(' ') + '\n');
if (!process.env.KILN_COMPAT_VERBOSE) console.log = () => {};

let checks = 0;
function eq(actual, expected, what) {
  checks++;
  assert.deepStrictEqual(actual, expected, `${what}: got ${JSON.stringify(actual)}, ` +
                         `expected ${JSON.stringify(expected)}`);
}
function ok(cond, what) {
  checks++;
  assert.ok(cond, what);
}

// The package throws Error("Error: {status, statusText, data}").
async function expectError(promise, status, code, what) {
  let err = null;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  ok(err !== null, `${what}: expected HTTP ${status} ${code}, the call succeeded`);
  const text = String(err.message);
  const info = JSON.parse(text.slice(text.indexOf('{')));
  eq(info.status, status, `${what}: HTTP status`);
  eq(info.data && info.data.error_code, code, `${what}: error_code`);
  ok(typeof info.data.message === 'string' && info.data.message.length > 0,
     `${what}: an error message`);
}

const num = (v) => Number(v);  // int64 fields may come as strings
const byKey = (arr) => Object.fromEntries((arr || []).map((e) => [e.key, e.value]));
const metricValues = (arr) => Object.fromEntries((arr || []).map((m) => [m.key, num(m.value)]));

async function experiments(client, name) {
  const {Experiments} = client;
  const created = await Experiments.create({name});
  const id = created.experiment_id;
  ok(typeof id === 'string' && id.length > 0, 'experiments/create returns an experiment_id string');

  let {experiment} = await Experiments.get({experiment_id: id});
  eq(experiment.experiment_id, id, 'experiments/get id');
  eq(experiment.name, name, 'experiments/get name');
  eq(experiment.lifecycle_stage, 'active', 'experiments/get lifecycle_stage');
  ok(typeof experiment.artifact_location === 'string' && experiment.artifact_location.length > 0,
     'experiments/get artifact_location');
  ok(num(experiment.creation_time) > 1.6e12, 'experiments/get creation_time in ms');

  const byName = await Experiments.req('get', '/get-by-name', {experiment_name: name});
  eq(byName.experiment.experiment_id, id, 'experiments/get-by-name');
  await expectError(Experiments.req('get', '/get-by-name', {experiment_name: name + '-absent'}),
                    404, 'RESOURCE_DOES_NOT_EXIST', 'get-by-name of a missing experiment');
  await expectError(Experiments.create({name}), 400, 'RESOURCE_ALREADY_EXISTS',
                    'creating a duplicate experiment');

  const all = await Experiments.req('post', '/search', {max_results: 1000});
  ok(all.experiments.some((e) => e.experiment_id === id && e.name === name),
     'experiments/search lists the new experiment');
  const filtered = await Experiments.req('post', '/search',
                                         {filter: `name = '${name}'`, max_results: 10});
  eq(filtered.experiments.map((e) => e.experiment_id), [id], 'experiments/search by name');

  await Experiments.req('post', '/set-experiment-tag', {experiment_id: id, key: 'team',
                                                         value: 'vision'});
  const renamed = name + '-renamed';
  await Experiments.update({experiment_id: id, new_name: renamed});
  ({experiment} = await Experiments.get({experiment_id: id}));
  eq(experiment.name, renamed, 'experiments/update renames');
  eq(byKey(experiment.tags).team, 'vision', 'experiment tag set with set-experiment-tag');

  await Experiments.delete({experiment_id: id});
  ({experiment} = await Experiments.get({experiment_id: id}));
  eq(experiment.lifecycle_stage, 'deleted', 'experiments/delete marks it deleted');
  const active = await Experiments.req('post', '/search',
                                       {view_type: ViewType.ACTIVE_ONLY, max_results: 1000});
  ok(!(active.experiments || []).some((e) => e.experiment_id === id),
     'a deleted experiment is not in ACTIVE_ONLY');
  const deleted = await Experiments.req('post', '/search',
                                        {view_type: ViewType.DELETED_ONLY, max_results: 1000});
  ok((deleted.experiments || []).some((e) => e.experiment_id === id),
     'a deleted experiment is in DELETED_ONLY');
  await Experiments.restore({experiment_id: id});
  ({experiment} = await Experiments.get({experiment_id: id}));
  eq(experiment.lifecycle_stage, 'active', 'experiments/restore');
  await expectError(Experiments.get({experiment_id: '987654321'}), 404,
                    'RESOURCE_DOES_NOT_EXIST', 'get of a missing experiment');
  return id;
}

async function createRun(Runs, expId, runName, start) {
  const {run} = await Runs.create({
    experiment_id: expId, user_id: 'compat', start_time: start,
    tags: [{key: 'mlflow.runName', value: runName}, {key: 'mlflow.source.type', value: 'LOCAL'}],
  });
  eq(run.info.experiment_id, expId, 'runs/create experiment_id');
  eq(run.info.status, RunStatus.RUNNING, 'runs/create status');
  eq(num(run.info.start_time), start, 'runs/create start_time');
  eq(run.info.run_name, runName, 'runs/create takes the run name from mlflow.runName');
  eq(run.info.run_id, run.info.run_uuid, 'run_uuid mirrors run_id');
  ok(/^[0-9a-f]{32}$/.test(run.info.run_id), 'run ids are 32 hex digits like MLflow');
  return run;
}

async function logging(client, expId, t0) {
  const {Runs, Metrics} = client;
  const run = await createRun(Runs, expId, 'compat-run', t0);
  const id = run.info.run_id;
  await Runs.logParameter({run_id: id, key: 'lr', value: '0.01'});
  await Runs.logMetric({run_id: id, key: 'loss', value: 0.5, timestamp: t0 + 1000, step: 0});
  await Runs.logMetric({run_id: id, key: 'loss', value: 0.25, timestamp: t0 + 2000, step: 1});
  await Runs.setTag({run_id: id, key: 'team', value: 'vision'});
  await Runs.setTag({run_id: id, key: 'scratch', value: 'x'});
  await Runs.logBatch({
    run_id: id,
    metrics: [{key: 'acc', value: 0.8, timestamp: t0 + 1000, step: 0},
              {key: 'acc', value: 0.9, timestamp: t0 + 2000, step: 1}],
    params: [{key: 'batch_size', value: '32'}, {key: 'model', value: 'efficientnet_b0'}],
    tags: [{key: 'stage', value: 'dev'}],
  });
  await Runs.deleteTag({run_id: id, key: 'scratch'});
  await expectError(Runs.logParameter({run_id: id, key: 'lr', value: '0.5'}), 400,
                    'INVALID_PARAMETER_VALUE', 'changing a logged param');

  let {run: got} = await Runs.get({run_id: id});
  eq(byKey(got.data.params), {lr: '0.01', batch_size: '32', model: 'efficientnet_b0'},
     'runs/get params');
  eq(metricValues(got.data.metrics), {loss: 0.25, acc: 0.9}, 'runs/get latest metrics');
  const tags = byKey(got.data.tags);
  eq(tags.team, 'vision', 'runs/get tag from set-tag');
  eq(tags.stage, 'dev', 'runs/get tag from log-batch');
  eq(tags['mlflow.runName'], 'compat-run', 'runs/get keeps mlflow.runName');
  eq(tags.scratch, undefined, 'runs/delete-tag removes the tag');

  const loss = await Metrics.getHistory({run_id: id, metric_key: 'loss'});
  const hist = loss.metrics.slice().sort((a, b) => num(a.step) - num(b.step));
  eq(hist.map((m) => [m.key, num(m.value), num(m.step), num(m.timestamp)]),
     [['loss', 0.5, 0, t0 + 1000], ['loss', 0.25, 1, t0 + 2000]], 'metrics/get-history loss');
  const acc = await Metrics.getHistory({run_id: id, metric_key: 'acc'});
  eq(acc.metrics.map((m) => num(m.value)).sort(), [0.8, 0.9], 'metrics/get-history acc');
  const none = await Metrics.getHistory({run_id: id, metric_key: 'absent'});
  eq(none.metrics || [], [], 'metrics/get-history of an unlogged key');

  const end = t0 + 65000;
  const upd = await Runs.update({run_id: id, status: RunStatus.FINISHED, end_time: end});
  eq(upd.run_info.status, RunStatus.FINISHED, 'runs/update answers the new status');
  ({run: got} = await Runs.get({run_id: id}));
  eq(got.info.status, RunStatus.FINISHED, 'runs/get status after update');
  eq(num(got.info.end_time), end, 'runs/get end_time after update');
  await expectError(Runs.get({run_id: '0123456789abcdef0123456789abcdef'}), 404,
                    'RESOURCE_DOES_NOT_EXIST', 'get of a missing run');
  return got;
}

async function searching(client, expId, run1, t0) {
  const {Runs} = client;
  const run2 = await createRun(Runs, expId, 'compat-run-2', t0 + 5000);
  const id2 = run2.info.run_id;
  await Runs.logBatch({run_id: id2, params: [{key: 'lr', value: '0.1'}],
                       metrics: [{key: 'acc', value: 0.7, timestamp: t0 + 6000, step: 0}]});
  const ids = async (args) => ((await Runs.search({experiment_ids: [expId], ...args})).runs || [])
      .map((r) => r.info.run_id).sort();
  const both = [run1.info.run_id, id2].sort();
  eq(await ids({}), both, 'runs/search lists both runs');
  eq(await ids({filter: "params.lr = '0.01'"}), [run1.info.run_id], 'runs/search params filter');
  eq(await ids({filter: 'metrics.acc > 0.85'}), [run1.info.run_id], 'runs/search metrics filter');
  eq(await ids({filter: "tags.team = 'vision'"}), [run1.info.run_id], 'runs/search tags filter');
  eq(await ids({filter: "attributes.status = 'RUNNING'"}), [id2], 'runs/search status filter');
  eq(await ids({filter: "params.lr = '0.01' and metrics.acc < 0.5"}), [],
     'runs/search AND of two filters');
  const ordered = await Runs.search({experiment_ids: [expId], order_by: ['metrics.acc DESC']});
  eq(ordered.runs.map((r) => r.info.run_id), [run1.info.run_id, id2], 'runs/search order_by');
  const page1 = await Runs.search({experiment_ids: [expId], max_results: 1});
  eq(page1.runs.length, 1, 'runs/search max_results 1');
  ok(typeof page1.next_page_token === 'string' && page1.next_page_token.length > 0,
     'runs/search gives a next_page_token');
  const page2 = await Runs.search({experiment_ids: [expId], max_results: 1,
                                   page_token: page1.next_page_token});
  eq([page1.runs[0].info.run_id, page2.runs[0].info.run_id].sort(), both,
     'runs/search pages hold both runs');

  await Runs.delete({run_id: id2});
  const {run: gone} = await Runs.get({run_id: id2});
  eq(gone.info.lifecycle_stage, 'deleted', 'runs/delete marks the run deleted');
  eq(await ids({run_view_type: ViewType.ACTIVE_ONLY}), [run1.info.run_id],
     'a deleted run is not in ACTIVE_ONLY');
  eq(await ids({run_view_type: ViewType.DELETED_ONLY}), [id2], 'a deleted run is in DELETED_ONLY');
  eq(await ids({run_view_type: ViewType.ALL}), both, 'ALL lists both');
  await Runs.restore({run_id: id2});
  eq(await ids({run_view_type: ViewType.ACTIVE_ONLY}), both, 'runs/restore');
}

async function artifacts(client, run) {
  const {Artifacts} = client;
  const {experiment_id: expId, run_id: id, artifact_uri: artifactUri} = run.info;
  ok(artifactUri.startsWith('mlflow-artifacts:'), `artifact_uri ${artifactUri} uses the proxy`);
  const files = {'model/MLmodel': 'artifact_path: model\nflavors: {}\n',
                 'model/data/weights.bin': 'x'.repeat(3000),
                 'notes.txt': 'hello from node\n'};
  for (const [rel, body] of Object.entries(files)) {
    const url = `${uri}/api/2.0/mlflow-artifacts/artifacts/${expId}/${id}/artifacts/${rel}`;
    const put = await fetch(url, {method: 'PUT', body});
    eq(put.status, 200, `PUT ${rel}`);
    const back = await fetch(url);
    eq(await back.text(), body, `GET ${rel} returns what was uploaded`);
  }
  const top = await Artifacts.list({run_id: id});
  ok(typeof top.root_uri === 'string' && top.root_uri.length > 0, 'artifacts/list root_uri');
  const shape = (f) => [f.path, Boolean(f.is_dir), f.is_dir ? null : num(f.file_size)];
  const rows = (list) => (list || []).map(shape).sort((a, b) => (a[0] < b[0] ? -1 : 1));
  const size = (rel) => Buffer.byteLength(files[rel]);
  eq(rows(top.files), [['model', true, null], ['notes.txt', false, size('notes.txt')]],
     'artifacts/list at the root');
  const model = await Artifacts.list({run_id: id, path: 'model'});
  eq(rows(model.files), [['model/MLmodel', false, size('model/MLmodel')],
                         ['model/data', true, null]], 'artifacts/list in model/');
  const data = await Artifacts.list({run_id: id, path: 'model/data'});
  eq(rows(data.files), [['model/data/weights.bin', false, 3000]],
     'artifacts/list in model/data/');
}

(async () => {
  const client = new MLflow({endpoint: uri});
  const t0 = Date.now() - 3600 * 1000;
  const name = `kiln-compat-${process.pid}-${Date.now()}`;
  const expId = await experiments(client, name);
  const run = await logging(client, expId, t0);
  await searching(client, expId, run, t0);
  await artifacts(client, run);
  say(`mlflow-compat: OK (${checks} checks against ${uri})`);
})().catch((e) => {
  // The call that failed: the first frame in this script (the package
  // rethrows transport errors, e.g. "fetch failed" when the server died).
  const frame = String(e.stack).split('\n').find((l) => l.includes(__filename)) || '';
  const cause = e.cause ? ` (${e.cause.message || e.cause})` : '';
  process.stderr.write(`mlflow-compat: FAILED after ${checks} checks: ${e.message}${cause}` +
                       ` ${frame.trim()}\n`);
  if (process.env.KILN_COMPAT_VERBOSE) process.stderr.write(`${e.stack}\n`);
  process.exit(1);
});
