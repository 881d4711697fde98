#!/usr/bin/env node
// validate.js RENDERED.yaml HELP_DIR
// Validates every object of a rendered kustomize overlay offline:
//   1. against the Kubernetes (kubernetes-models) and KEDA (@kubernetes-models/keda) schemas;
//   2. that every container of ours (image sdcluster:*) runs a binary whose --help lists each
//      --flag in its args (HELP_DIR/<binary>.help holds that text), that every $(VAR) in its args
//      is defined in its env, that --http's port is the container's "http" port and the port of
//      its probes, and that its liveness and readiness probes GET /healthz and /readyz;
//   3. that names referred to (ConfigMaps, Secrets, PVCs, Services in --coordinator/--redis,
//      scale targets) are objects of the same render.
// Prints one line per problem and exits 1 if there is any.
'use strict';
const fs = require('fs');
const path = require('path');
const YAML = require('yaml');
const k8s = require('kubernetes-models');
const keda = require('@kubernetes-models/keda');

const [file, helpDir] = process.argv.slice(2);
if (!file || !helpDir) {
  console.error('usage: validate.js RENDERED.yaml HELP_DIR');
  process.exit(2);
}
const label = path.basename(file);
const problems = [];
const bad = (where, msg) => problems.push(`${label}: ${where}: ${msg}`);

const docs = YAML.parseAllDocuments(fs.readFileSync(file, 'utf8'));
const objs = [];
for (const d of docs) {
  if (d.errors.length) bad('yaml', d.errors.map((e) => e.message).join('; '));
  else if (d.contents) objs.push(d.toJSON());
}

// --- 1. schemas -----------------------------------------------------------------------------
// apiVersion "apps/v1" -> k8s.apps.v1; "v1" -> k8s.v1; "keda.sh/v1alpha1" -> keda.kedaSh.v1alpha1
function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const camel = (s) => s.replace(/[.-]([a-z0-9])/g, (_, c) => c.toUpperCase());
  if (group === 'keda.sh') return keda.kedaSh?.[version]?.[kind];
  const ns = group === '' ? k8s[version] : k8s[camel(group)]?.[version];
  return ns?.[kind];
}
const known = new Set();
for (const o of objs) {
  const id = `${o.kind}/${o.metadata?.name}`;
  known.add(id);
  const Model = o.apiVersion && o.kind && modelFor(o.apiVersion, o.kind);
  if (!Model) {
    bad(id, `no schema for apiVersion ${o.apiVersion} kind ${o.kind}`);
    continue;
  }
  try {
    new Model(o).validate();
  } catch (e) {
    bad(id, `schema: ${e.message}`);
  }
  if (o.kind !== 'Namespace' && o.metadata?.namespace !== 'sdcluster') bad(id, 'not in namespace sdcluster');
}

// --- 2. our containers against the binaries' --help ----------------------------------------
const helpCache = {};
function helpOf(binary) {
  if (!(binary in helpCache)) {
    const f = path.join(helpDir, `${binary}.help`);
    helpCache[binary] = fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : null;
  }
  return helpCache[binary];
}
const HTTP_PATHS = { livenessProbe: '/healthz', readinessProbe: '/readyz', startupProbe: '/healthz' };

function podSpecOf(o) {
  if (['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job'].includes(o.kind)) return o.spec?.template?.spec;
  if (o.kind === 'Pod') return o.spec;
  return null;
}
function portNumber(c, port) {
  if (typeof port === 'number') return port;
  const p = (c.ports || []).find((x) => x.name === port);
  return p ? p.containerPort : NaN;
}

for (const o of objs) {
  const spec = podSpecOf(o);
  if (!spec) continue;
  const id = `${o.kind}/${o.metadata.name}`;
  for (const v of spec.volumes || []) {
    if (v.configMap && !known.has(`ConfigMap/${v.configMap.name}`)) bad(id, `volume ${v.name}: no ConfigMap ${v.configMap.name}`);
    if (v.secret && !known.has(`Secret/${v.secret.secretName}`)) bad(id, `volume ${v.name}: no Secret ${v.secret.secretName}`);
    if (v.persistentVolumeClaim && !known.has(`PersistentVolumeClaim/${v.persistentVolumeClaim.claimName}`))
      bad(id, `volume ${v.name}: no PersistentVolumeClaim ${v.persistentVolumeClaim.claimName}`);
  }
  for (const c of [...(spec.initContainers || []), ...(spec.containers || [])]) {
    const where = `${id} container ${c.name}`;
    for (const e of c.env || []) {
      const cm = e.valueFrom?.configMapKeyRef, sec = e.valueFrom?.secretKeyRef;
      if (cm) {
        const m = objs.find((x) => x.kind === 'ConfigMap' && x.metadata.name === cm.name);
        if (!m) bad(where, `env ${e.name}: no ConfigMap ${cm.name}`);
        else if (!(cm.key in (m.data || {}))) bad(where, `env ${e.name}: ConfigMap ${cm.name} has no key ${cm.key}`);
      }
      if (sec) {
        const m = objs.find((x) => x.kind === 'Secret' && x.metadata.name === sec.name);
        if (!m) bad(where, `env ${e.name}: no Secret ${sec.name}`);
        else if (!(sec.key in { ...(m.data || {}), ...(m.stringData || {}) })) bad(where, `env ${e.name}: Secret ${sec.name} has no key ${sec.key}`);
      }
    }
    if (!/^sdcluster(:|@|$)/.test(c.image || '')) continue; // not one of ours (redis)
    const cmd = c.command || [];
    if (cmd.length !== 1 || !cmd[0].startsWith('/usr/local/bin/')) {
      bad(where, `command must be the one binary under /usr/local/bin/, is ${JSON.stringify(cmd)}`);
      continue;
    }
    const binary = path.basename(cmd[0]);
    const help = helpOf(binary);
    if (help === null) {
      bad(where, `${binary}: no such binary (no ${binary}.help)`);
      continue;
    }
    const args = c.args || [];
    const envNames = new Set((c.env || []).map((e) => e.name));
    const unknown = [];
    let httpPort = null;
    const flagValue = {};
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      for (const m of a.matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g))
        if (!envNames.has(m[1])) bad(where, `arg ${a}: $(${m[1]}) is not in the container's env (Kubernetes would pass it literally)`);
      if (!a.startsWith('--')) {
        bad(where, `arg "${a}" is not a --flag=value (write flags as --name=value)`);
        continue;
      }
      const name = a.slice(2).split('=')[0];
      const re = new RegExp(`(^|\\s)--${name.replace(/[-]/g, '\\-')}(\\s|=|$)`, 'm');
      if (!re.test(help)) unknown.push(`--${name}`);
      flagValue[name] = a.includes('=') ? a.slice(a.indexOf('=') + 1) : '';
    }
    if (unknown.length) bad(where, `${binary} --help does not list: ${unknown.join(' ')}`);
    // --http ADDR:PORT must match the container port named http and the probes' port
    if (!('http' in flagValue)) bad(where, 'no --http=ADDR:PORT: the probes and /metrics need it');
    else {
      const m = /^(.*):(\d+)$/.exec(flagValue.http);
      if (!m) bad(where, `--http=${flagValue.http} is not ADDR:PORT`);
      else {
        httpPort = Number(m[2]);
        if (m[1] !== '0.0.0.0') bad(where, `--http=${flagValue.http}: bind 0.0.0.0 or the kubelet cannot probe it`);
      }
      const named = (c.ports || []).find((p) => p.name === 'http');
      if (!named) bad(where, 'no container port named http');
      else if (httpPort !== null && named.containerPort !== httpPort)
        bad(where, `container port http is ${named.containerPort}, --http listens on ${httpPort}`);
    }
    for (const [probe, want] of Object.entries(HTTP_PATHS)) {
      const p = c[probe];
      if (!p) {
        if (probe !== 'startupProbe') bad(where, `no ${probe}`);
        continue;
      }
      if (!p.httpGet) {
        bad(where, `${probe} is not an httpGet`);
        continue;
      }
      if (p.httpGet.path !== want) bad(where, `${probe} path is ${p.httpGet.path}, must be ${want}`);
      const port = portNumber(c, p.httpGet.port);
      if (httpPort !== null && port !== httpPort) bad(where, `${probe} port is ${p.httpGet.port}, --http listens on ${httpPort}`);
    }
    // the ZeroMQ ports in --bind match a declared container port
    const bindPort = /:(\d+)$/.exec(flagValue.bind || '');
    if (bindPort && !(c.ports || []).some((p) => p.containerPort === Number(bindPort[1])))
      bad(where, `--bind=${flagValue.bind}: port ${bindPort[1]} is not a container port`);
    // host names in --coordinator / --redis are Services of this render with that port
    for (const f of ['coordinator', 'redis']) {
      if (!(f in flagValue)) continue;
      let host = (/^[a-z]+:\/\/(?:[^@/]*@)?([^:/]+):(\d+)/.exec(flagValue[f]) || [])[1];
      const port = Number((/^[a-z]+:\/\/(?:[^@/]*@)?[^:/]+:(\d+)/.exec(flagValue[f]) || [])[1]);
      const hv = /^\$\((\w+)\)$/.exec(host || '');
      if (hv) host = (c.env || []).find((e) => e.name === hv[1])?.value;
      if (!host) {
        bad(where, `--${f}=${flagValue[f]}: cannot tell its host`);
        continue;
      }
      const svc = objs.find((x) => x.kind === 'Service' && x.metadata.name === host);
      if (!svc) bad(where, `--${f}: no Service ${host} in this render`);
      else if (!(svc.spec.ports || []).some((p) => p.port === port)) bad(where, `--${f}: Service ${host} has no port ${port}`);
    }
  }
}

// --- 3. autoscalers and budgets point at objects of this render ------------------------------
for (const o of objs) {
  const id = `${o.kind}/${o.metadata.name}`;
  if (o.kind === 'HorizontalPodAutoscaler' || o.kind === 'ScaledObject') {
    const t = o.spec.scaleTargetRef;
    if (!known.has(`${t.kind || 'Deployment'}/${t.name}`)) bad(id, `scaleTargetRef ${t.kind || 'Deployment'}/${t.name} is not in this render`);
  }
  if (o.kind === 'PodDisruptionBudget' || o.kind === 'Service') {
    const sel = o.kind === 'Service' ? o.spec.selector : o.spec.selector?.matchLabels;
    if (!sel) continue;
    const hit = objs.some((w) => {
      const labels = podSpecOf(w) && w.spec.template?.metadata?.labels;
      return labels && Object.entries(sel).every(([k, v]) => labels[k] === v);
    });
    if (!hit) bad(id, `selector ${JSON.stringify(sel)} matches no pod template`);
  }
}

for (const p of problems) console.log(p);
console.log(`${label}: ${objs.length} objects, ${problems.length} problem(s)`);
process.exit(problems.length ? 1 : 0);
