// Schema validation of Kubernetes objects with npm's kubernetes-models (core API),
// @kubernetes-models/istio and @kubernetes-models/prometheus-operator, loaded from the
// checkout's .tools/node_modules (scripts/install-deps.sh installs them).
import { existsSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const cache = new Map();

function packageFor(group) {
  if (group.endsWith("istio.io")) return "@kubernetes-models/istio";
  if (group === "monitoring.coreos.com") return "@kubernetes-models/prometheus-operator";
  return "kubernetes-models";
}

// The model class for apiVersion/kind, or null when no package knows it.
export async function modelClass(nodeModules, apiVersion, kind) {
  const key = `${apiVersion}/${kind}`;
  if (cache.has(key)) return cache.get(key);
  const slash = apiVersion.indexOf("/");
  const group = slash < 0 ? "" : apiVersion.slice(0, slash);
  const version = slash < 0 ? apiVersion : apiVersion.slice(slash + 1);
  const file = path.join(nodeModules, packageFor(group), group || "", version, `${kind}.js`);
  let cls = null;
  if (/^[A-Za-z0-9]+$/.test(kind) && existsSync(file)) {
    const mod = await import(pathToFileURL(file).href);
    cls = mod[kind] ?? null;
  }
  cache.set(key, cls);
  return cls;
}

// Unknown fields: kubernetes-models' schemas allow any extra property, so a typo such as
// "readinesProbe" would pass. Every nested object is wrapped in a Proxy that records which
// keys the compiled validator looks up; in an object where the validator looked up some
// keys (its schema lists properties) but never enumerated them (no map/free-form schema),
// a key it never looked up is one the schema does not define.
function tracked(root) {
  const records = [];
  const proxies = new WeakMap();
  const wrap = (value, where) => {
    if (value === null || typeof value !== "object") return value;
    if (proxies.has(value)) return proxies.get(value);
    const rec = { where, target: value, accessed: new Set(), enumerated: false };
    records.push(rec);
    const proxy = new Proxy(value, {
      get(t, k, r) {
        if (typeof k === "string") rec.accessed.add(k);
        return wrap(Reflect.get(t, k, r), `${where}/${String(k)}`);
      },
      has(t, k) {
        if (typeof k === "string") rec.accessed.add(k);
        return Reflect.has(t, k);
      },
      ownKeys(t) {
        rec.enumerated = true;
        return Reflect.ownKeys(t);
      },
    });
    proxies.set(value, proxy);
    return proxy;
  };
  const copy = wrap(root, "");
  const unknown = () => {
    const out = [];
    for (const r of records) {
      if (Array.isArray(r.target) || r.enumerated || r.accessed.size === 0) continue;
      for (const k of Object.keys(r.target))
        if (!r.accessed.has(k)) out.push(`${r.where}/${k}: unknown field`);
    }
    return out;
  };
  return { copy, unknown };
}

// Validate one object; returns a list of messages (empty when valid).
export async function validateObject(nodeModules, obj) {
  if (!obj || typeof obj !== "object" || Array.isArray(obj)) return ["not a mapping"];
  const { apiVersion, kind } = obj;
  if (typeof apiVersion !== "string" || typeof kind !== "string")
    return ["apiVersion and kind are required"];
  if (!obj.metadata || typeof obj.metadata.name !== "string" || obj.metadata.name === "")
    return ["metadata.name is required"];
  const cls = await modelClass(nodeModules, apiVersion, kind);
  if (!cls) return [`no schema for ${apiVersion} ${kind} (unknown apiVersion or kind)`];
  const { copy, unknown } = tracked(obj);
  try {
    // The model's constructor deep-copies (losing the proxies): run its validator on the
    // proxied object itself.
    cls.prototype.validate.call(copy);
  } catch (e) {
    return [e.message];
  }
  return unknown();
}
