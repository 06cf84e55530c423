// The properties the kiln-serving chart and the platform promise, asserted on rendered
// objects (plain JSON). Each function returns a list of failures, "<object>: <what>".

const ofKind = (objs, kind) => objs.filter((o) => o.kind === kind);
const id = (o) => `${o.kind}/${o.metadata?.name}`;
const matches = (selector, labels) =>
  Object.entries(selector || {}).every(([k, v]) => (labels || {})[k] === v);

// The value after a flag in an argument list, or undefined.
function flag(args, name) {
  const i = (args || []).indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function checkProbe(fail, where, probe, wantPath, ports) {
  if (!probe) return fail(`${where}: missing`);
  const get = probe.httpGet;
  if (!get) return fail(`${where}: not an httpGet probe`);
  if (get.path !== wantPath) fail(`${where}: path ${get.path}, want ${wantPath}`);
  const known = ports.some((p) => p.name === get.port || p.containerPort === get.port);
  if (!known) fail(`${where}: port ${get.port} is not a container port`);
}

function checkPodSecurity(fail, where, pod, c) {
  const psc = pod.securityContext || {};
  const sc = c.securityContext || {};
  const nonRoot = sc.runAsNonRoot ?? psc.runAsNonRoot;
  const uid = sc.runAsUser ?? psc.runAsUser;
  if (nonRoot !== true) fail(`${where}: runAsNonRoot is not true`);
  if (uid === undefined || uid === 0) fail(`${where}: runAsUser is ${uid ?? "unset"}, want a non-zero uid`);
  if (sc.readOnlyRootFilesystem !== true) fail(`${where}: readOnlyRootFilesystem is not true`);
  if (sc.allowPrivilegeEscalation !== false) fail(`${where}: allowPrivilegeEscalation is not false`);
  if (sc.privileged) fail(`${where}: privileged`);
  if (!(sc.capabilities?.drop || []).includes("ALL")) fail(`${where}: capabilities.drop lacks ALL`);
  if (sc.capabilities?.add?.length) fail(`${where}: adds capabilities ${sc.capabilities.add}`);
  // Pod Security Standards "restricted" also wants a seccomp profile.
  const seccomp = (sc.seccompProfile ?? psc.seccompProfile)?.type;
  if (!["RuntimeDefault", "Localhost"].includes(seccomp)) fail(`${where}: no RuntimeDefault seccomp profile`);
}

// Every container of every pod-bearing object, with its pod spec.
function containersOf(o) {
  const pod = o.kind === "CronJob" ? o.spec?.jobTemplate?.spec?.template?.spec
    : ["Deployment", "StatefulSet", "DaemonSet", "Job"].includes(o.kind) ? o.spec?.template?.spec
      : o.kind === "Pod" ? o.spec : null;
  return pod ? [...(pod.initContainers || []), ...(pod.containers || [])].map((c) => ({ pod, c })) : [];
}

// Images are pinned: a tag or digest, never latest.
function checkImagesPinned(fail, objs) {
  for (const o of objs)
    for (const { c } of containersOf(o)) {
      const img = c.image || "";
      const tag = img.includes("@") ? "digest" : img.slice(img.lastIndexOf("/") + 1).split(":")[1];
      if (!tag || tag === "latest") fail(`${id(o)} container ${c.name}: image ${img} is not pinned to a version`);
    }
}

function checkMounts(fail, where, pod, c, mustBeEmptyDir) {
  const volumes = new Map((pod.volumes || []).map((v) => [v.name, v]));
  for (const m of c.volumeMounts || [])
    if (!volumes.has(m.name)) fail(`${where}: volumeMount ${m.name} has no volume`);
  for (const dir of mustBeEmptyDir) {
    const m = (c.volumeMounts || []).find((x) => x.mountPath === dir);
    if (!m) fail(`${where}: ${dir} is not mounted (the root filesystem is read-only)`);
    else if (!volumes.get(m.name)?.emptyDir) fail(`${where}: ${dir} is not an emptyDir`);
  }
}

export function chartInvariants(objs, opts = {}) {
  const failures = [];
  const fail = (m) => failures.push(m);
  const deps = ofKind(objs, "Deployment");
  if (deps.length !== 1) return [`want exactly one Deployment, got ${deps.length}`];
  const dep = deps[0];
  const spec = dep.spec || {};
  const pod = spec.template?.spec || {};
  const podLabels = spec.template?.metadata?.labels || {};
  const d = id(dep);

  // Rollouts: one surge pod, nothing unavailable, five revisions to roll back to.
  const ru = spec.strategy?.rollingUpdate || {};
  if (spec.strategy?.type !== "RollingUpdate") fail(`${d}: strategy is not RollingUpdate`);
  if (!(ru.maxUnavailable === 0 || ru.maxUnavailable === "0%"))
    fail(`${d}: maxUnavailable is ${JSON.stringify(ru.maxUnavailable)}, want 0`);
  if (ru.maxSurge !== 1) fail(`${d}: maxSurge is ${JSON.stringify(ru.maxSurge)}, want 1`);
  if (spec.revisionHistoryLimit !== 5) fail(`${d}: revisionHistoryLimit is ${spec.revisionHistoryLimit}, want 5`);
  if (!matches(spec.selector?.matchLabels, podLabels)) fail(`${d}: selector does not match the pod labels`);
  if ("app.kubernetes.io/version" in (spec.selector?.matchLabels || {}))
    fail(`${d}: the selector carries the version (selectors are immutable: upgrades would fail)`);
  const sum = spec.template?.metadata?.annotations?.["checksum/config"];
  if (!/^[0-9a-f]{64}$/.test(sum || "")) fail(`${d}: no checksum/config annotation on the pod template`);

  const c = (pod.containers || []).find((x) => x.name === "kiln-serve");
  if (!c) return [...failures, `${d}: no kiln-serve container`];
  const where = `${d} container kiln-serve`;
  const ports = c.ports || [];
  checkProbe(fail, `${where} readinessProbe`, c.readinessProbe, "/readyz", ports);
  checkProbe(fail, `${where} livenessProbe`, c.livenessProbe, "/healthz", ports);
  checkProbe(fail, `${where} startupProbe`, c.startupProbe, "/healthz", ports);
  checkPodSecurity(fail, where, pod, c);
  const cacheDir = flag(c.args, "--cache-dir");
  if (!cacheDir) fail(`${where}: no --cache-dir`);
  checkMounts(fail, where, pod, c, ["/tmp", ...(cacheDir ? [cacheDir] : [])]);
  if (!c.resources?.requests?.cpu || !c.resources?.requests?.memory)
    fail(`${where}: no cpu/memory requests`);
  if (!c.resources?.limits?.memory) fail(`${where}: no memory limit`);

  // Draining: preStop sleep, then kiln-serve's --shutdown-delay, then its 30 s drain bound.
  const pre = c.lifecycle?.preStop?.exec?.command;
  const preSleep = pre && pre[0] === "sleep" ? Number(pre[1]) : NaN;
  if (!(preSleep > 0)) fail(`${where}: no preStop sleep`);
  const delay = Number(flag(c.args, "--shutdown-delay"));
  if (!(delay >= 0)) fail(`${where}: no --shutdown-delay`);
  const grace = pod.terminationGracePeriodSeconds;
  if (!(grace >= (preSleep || 0) + (delay || 0) + 30))
    fail(`${d}: terminationGracePeriodSeconds ${grace} < preStop ${preSleep} + --shutdown-delay ${delay} + 30 s drain`);

  const env = new Map((c.env || []).map((e) => [e.name, e]));
  const tag = (c.image || "").split(":").pop();
  if (env.get("KILN_SERVING_IMAGE_VERSION")?.value !== tag)
    fail(`${where}: KILN_SERVING_IMAGE_VERSION is not the image tag ${tag}`);
  for (const k of ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]) {
    const ref = env.get(k)?.valueFrom?.secretKeyRef;
    if (!ref?.name) fail(`${where}: ${k} does not come from a Secret`);
  }
  if ((c.env || []).some((e) => /SECRET|PASSWORD|TOKEN/.test(e.name) && "value" in e))
    fail(`${where}: a credential is set as a literal value`);
  const gpu = c.resources?.limits?.["nvidia.com/gpu"];
  if (flag(c.args, "--device") === "cuda" && !(gpu >= 1))
    fail(`${where}: --device cuda without an nvidia.com/gpu limit`);
  if (opts.gpu && !(gpu >= 1)) fail(`${where}: no nvidia.com/gpu limit`);

  // Service -> pods, VirtualService -> Service, DestinationRule -> Service.
  const svcs = ofKind(objs, "Service");
  if (svcs.length !== 1) fail(`want exactly one Service, got ${svcs.length}`);
  const svc = svcs[0];
  if (svc) {
    if (!matches(svc.spec?.selector, podLabels)) fail(`${id(svc)}: selector does not match the pods`);
    for (const p of svc.spec?.ports || [])
      if (!ports.some((cp) => cp.name === p.targetPort || cp.containerPort === p.targetPort))
        fail(`${id(svc)}: targetPort ${p.targetPort} is not a container port`);
  }
  const ns = opts.namespace || "default";
  const svcHosts = svc ? [svc.metadata.name, `${svc.metadata.name}.${ns}`,
    `${svc.metadata.name}.${ns}.svc`, `${svc.metadata.name}.${ns}.svc.cluster.local`] : [];
  const svcPorts = (svc?.spec?.ports || []).map((p) => p.port);
  const vss = ofKind(objs, "VirtualService");
  if (opts.istio !== false && vss.length !== 1) fail(`want exactly one VirtualService, got ${vss.length}`);
  for (const vs of vss) {
    const v = id(vs);
    if (!(vs.spec?.gateways || []).some((g) => g.split("/").pop() === (opts.gateway || "mlops-gateway")))
      fail(`${v}: not bound to ${opts.gateway || "mlops-gateway"}`);
    const routes = vs.spec?.http || [];
    if (!routes.length) fail(`${v}: no http routes`);
    let prefixSeen = false;
    for (const [i, r] of routes.entries()) {
      const rw = `${v} http[${i}]`;
      for (const dest of r.route || []) {
        if (!svcHosts.includes(dest.destination?.host))
          fail(`${rw}: destination host ${dest.destination?.host} is not the Service ${svc?.metadata?.name}`);
        if (!svcPorts.includes(dest.destination?.port?.number))
          fail(`${rw}: destination port ${dest.destination?.port?.number} is not a port of the Service (${svcPorts})`);
      }
      if (!r.timeout) fail(`${rw}: no timeout`);
      if (!(r.retries?.attempts >= 1) || !r.retries?.perTryTimeout) fail(`${rw}: no retries`);
      for (const m of r.match || []) {
        const p = m.uri?.prefix ?? m.uri?.exact;
        if (p === undefined) continue;
        if (opts.pathPrefix && (p === opts.pathPrefix || p === `${opts.pathPrefix}/`)) prefixSeen = true;
        // prefix "/x" rewritten to "/" turns "/x/predict" into "//predict".
        if (m.uri.prefix && r.rewrite?.uri === "/" && !m.uri.prefix.endsWith("/"))
          fail(`${rw}: prefix ${m.uri.prefix} rewritten to / gives //path; end the prefix with /`);
      }
      if (r.rewrite?.uri !== "/") fail(`${rw}: not rewritten to /`);
    }
    if (opts.pathPrefix && !prefixSeen) fail(`${v}: no route for ${opts.pathPrefix}`);
  }
  for (const dr of ofKind(objs, "DestinationRule")) {
    if (!svcHosts.includes(dr.spec?.host)) fail(`${id(dr)}: host ${dr.spec?.host} is not the Service`);
    if (!dr.spec?.trafficPolicy?.outlierDetection) fail(`${id(dr)}: no outlierDetection`);
  }

  // Disruptions and scaling.
  const hpas = ofKind(objs, "HorizontalPodAutoscaler");
  const minReplicas = hpas.length ? hpas[0].spec?.minReplicas ?? 1 : spec.replicas ?? 1;
  for (const hpa of hpas) {
    const t = hpa.spec?.scaleTargetRef || {};
    if (t.kind !== "Deployment" || t.name !== dep.metadata.name)
      fail(`${id(hpa)}: scaleTargetRef is ${t.kind}/${t.name}, not ${d}`);
    if ("replicas" in spec) fail(`${d}: sets replicas although an HPA scales it (upgrades would reset it)`);
  }
  if (opts.hpa && !hpas.length) fail("no HorizontalPodAutoscaler");
  const pdbs = ofKind(objs, "PodDisruptionBudget");
  if (!pdbs.length) fail("no PodDisruptionBudget");
  for (const pdb of pdbs) {
    if (!matches(pdb.spec?.selector?.matchLabels, podLabels)) fail(`${id(pdb)}: selector does not match the pods`);
    if (typeof pdb.spec?.minAvailable === "number" && pdb.spec.minAvailable >= minReplicas)
      fail(`${id(pdb)}: minAvailable ${pdb.spec.minAvailable} >= ${minReplicas} replicas blocks every node drain`);
  }
  for (const sm of ofKind(objs, "ServiceMonitor")) {
    const ep = sm.spec?.endpoints || [];
    if (!ep.some((e) => e.path === "/metrics" && (svc?.spec?.ports || []).some((p) => p.name === e.port)))
      fail(`${id(sm)}: no endpoint scraping /metrics on a named Service port`);
    if (!matches(sm.spec?.selector?.matchLabels, svc?.metadata?.labels)) fail(`${id(sm)}: selector misses the Service`);
  }
  if (opts.serviceMonitor && !ofKind(objs, "ServiceMonitor").length) fail("no ServiceMonitor");
  checkImagesPinned(fail, objs);
  return failures;
}

// `helm upgrade --set image.tag=NEW` from BEFORE to AFTER: the Deployment rolls (its pod
// template changes to the new image) and nothing immutable changes.
export function upgradeInvariants(before, after, newTag) {
  const failures = [];
  const a = ofKind(before, "Deployment")[0];
  const b = ofKind(after, "Deployment")[0];
  if (!a || !b) return ["no Deployment to compare"];
  if (JSON.stringify(a.spec.selector) !== JSON.stringify(b.spec.selector))
    failures.push("the Deployment's selector changes on upgrade (immutable: the upgrade would fail)");
  const ca = a.spec.template.spec.containers[0];
  const cb = b.spec.template.spec.containers[0];
  if (!cb.image.endsWith(`:${newTag}`)) failures.push(`image ${cb.image} is not tagged ${newTag}`);
  if (ca.image === cb.image) failures.push("the image does not change: nothing would roll");
  const sa = ofKind(before, "Service")[0];
  const sb = ofKind(after, "Service")[0];
  if (JSON.stringify(sa?.spec) !== JSON.stringify(sb?.spec)) failures.push("the Service changes with the image tag");
  return failures;
}

// A ConfigMap change (no image change) must still roll the pods: the checksum annotation
// on the pod template changes with the ConfigMap's data.
export function configRollInvariants(before, after) {
  const sum = (objs) => ofKind(objs, "Deployment")[0]?.spec?.template?.metadata?.annotations?.["checksum/config"];
  const data = (objs) => JSON.stringify(ofKind(objs, "ConfigMap")[0]?.data);
  if (data(before) === data(after)) return ["the ConfigMap did not change: nothing to compare"];
  if (!sum(before) || sum(before) === sum(after)) return ["the ConfigMap changed but the pod template's checksum/config did not: pods would keep the old settings"];
  return [];
}

// The platform: the gateway and its routes, the Secrets the pipeline and the chart read,
// the CronJob alternative to KFP.
export function platformInvariants(objs, { pipelineSecrets = [], pipelineImages = [], version, externalHosts = {},
  endpoints = [] }) {
  const failures = [];
  const fail = (m) => failures.push(m);
  const gw = ofKind(objs, "Gateway").find((g) => g.metadata.name === "mlops-gateway");
  if (!gw) fail("no Gateway mlops-gateway");
  else if (!(gw.spec?.servers || []).some((s) => s.port?.number === 80 && (s.hosts || []).includes("*")))
    fail("Gateway mlops-gateway: no server on port 80 for hosts *");
  const gwRef = gw ? `${gw.metadata.namespace}/${gw.metadata.name}` : "";
  // host -> ports, of the platform's Services and of KFP's (externalHosts).
  const known = new Map(Object.entries(externalHosts));
  for (const s of ofKind(objs, "Service")) {
    const k = `${s.metadata.name}.${s.metadata.namespace}`;
    known.set(k, [...(known.get(k) || []), ...(s.spec?.ports || []).map((p) => p.port)]);
  }
  const prefixes = new Set();
  for (const vs of ofKind(objs, "VirtualService")) {
    if (!(vs.spec?.gateways || []).includes(gwRef)) fail(`${id(vs)}: not bound to ${gwRef}`);
    for (const r of vs.spec?.http || []) {
      for (const m of r.match || []) if (m.uri?.prefix) prefixes.add(m.uri.prefix.replace(/\/$/, ""));
      for (const dst of r.route || []) {
        const h = dst.destination?.host || "";
        const short = h.replace(/\.svc(\.cluster\.local)?$/, "");
        if (!known.has(short)) fail(`${id(vs)}: destination ${h} is not a Service of the platform or of KFP`);
        else if (!known.get(short).includes(dst.destination?.port?.number))
          fail(`${id(vs)}: destination port ${dst.destination?.port?.number} is not a port of ${short} (${known.get(short)})`);
      }
    }
  }
  for (const p of ["/minio", "/mlflow", "/pipeline"]) if (!prefixes.has(p)) fail(`no VirtualService routes ${p}`);

  const secrets = new Map(ofKind(objs, "Secret").map((s) => [`${s.metadata.namespace}/${s.metadata.name}`, s]));
  for (const { namespace, name, keys } of pipelineSecrets) {
    const s = secrets.get(`${namespace}/${name}`);
    if (!s) { fail(`no Secret ${namespace}/${name} (pipelines/kiln-train.yaml reads it)`); continue; }
    const have = new Set(Object.keys({ ...(s.data || {}), ...(s.stringData || {}) }));
    for (const k of keys) if (!have.has(k)) fail(`Secret ${namespace}/${name}: no key ${k}`);
  }
  // URLs the pipeline's defaults and the chart's values point at: platform (or KFP) Services.
  for (const { what, url } of endpoints) {
    const m = /^(?:https?:\/\/)?([^/:]+)(?::(\d+))?/.exec(url || "");
    const host = (m?.[1] || "").replace(/\.svc(\.cluster\.local)?$/, "");
    const port = Number(m?.[2] || (url?.startsWith("https") ? 443 : 80));
    if (!known.has(host)) fail(`${what} ${url}: ${host} is not a Service of the platform or of KFP`);
    else if (!known.get(host).includes(port)) fail(`${what} ${url}: port ${port} is not a port of ${host} (${known.get(host)})`);
  }
  checkImagesPinned(fail, objs);
  for (const o of objs)
    for (const { c } of containersOf(o))
      if (/^kiln:/.test(c.image || "") && c.image !== `kiln:${version}`)
        fail(`${id(o)} container ${c.name}: image ${c.image}, not kiln:${version} (setup.sh --kiln-image substitutes it)`);
  for (const img of pipelineImages)
    if (img !== `kiln:${version}`) fail(`pipelines/kiln-train.yaml runs ${img}, not kiln:${version} (what scripts/build-images.sh tags)`);

  const crons = ofKind(objs, "CronJob");
  if (!crons.length) fail("no CronJob running kiln pipeline run-local");
  for (const cj of crons) {
    const pod = cj.spec?.jobTemplate?.spec?.template?.spec || {};
    if (cj.spec?.concurrencyPolicy !== "Forbid") fail(`${id(cj)}: concurrencyPolicy is not Forbid`);
    for (const c of pod.containers || []) {
      const cmd = [...(c.command || []), ...(c.args || [])];
      if (!(cmd.includes("pipeline") && cmd.includes("run-local"))) fail(`${id(cj)}: does not run kiln pipeline run-local`);
      if (!/(^|\/)kiln:/.test(c.image || "")) fail(`${id(cj)}: image ${c.image} is not the kiln components image`);
      checkPodSecurity(fail, `${id(cj)} container ${c.name}`, pod, c);
      checkMounts(fail, `${id(cj)} container ${c.name}`, pod, c, ["/tmp"]);
    }
  }
  for (const o of objs)
    if (o.kind !== "Namespace" && !o.metadata?.namespace && !["ClusterRole", "ClusterRoleBinding"].includes(o.kind))
      fail(`${id(o)}: no metadata.namespace (platform manifests are applied as they are)`);
  return failures;
}
