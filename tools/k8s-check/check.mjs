// kiln's static Kubernetes checks (run by scripts/check-k8s.sh). Input is JSON from
// `k8s-render tojson` ([{source, index, doc}]); prints one line per finding and exits 1
// when anything fails.
//   node check.mjs values  SCHEMA.json VALUES.json LABEL
//   node check.mjs objects DOCS.json...
//   node check.mjs chart   DOCS.json [--gpu] [--hpa] [--service-monitor] [--namespace NS]
//                          [--path-prefix P] [--gateway NAME]
//   node check.mjs upgrade BEFORE.json AFTER.json NEW_TAG
//   node check.mjs config-roll BEFORE.json AFTER.json
//   node check.mjs platform DOCS.json --pipeline PIPELINE.json --version X [--chart-values V.json]
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { validateObject } from "./lib/models.mjs";
import { chartInvariants, configRollInvariants, platformInvariants, upgradeInvariants } from "./lib/invariants.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeModules = process.env.KILN_K8S_NODE_MODULES ||
  path.resolve(here, "../../.tools/node_modules");
const readJSON = (f) => JSON.parse(readFileSync(f, "utf8"));
const docs = (f) => readJSON(f).map((e) => e.doc);

function report(label, failures) {
  for (const f of failures) console.log(`FAIL ${label}: ${f}`);
  if (!failures.length) console.log(`ok   ${label}`);
  return failures.length;
}

function opt(args, name) {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function main(argv) {
  const [cmd, ...args] = argv;
  let bad = 0;
  switch (cmd) {
    case "values": {
      const [schemaFile, valuesFile, label] = args;
      const require = createRequire(path.join(nodeModules, "noop.js"));
      const Ajv = require("ajv");
      const ajv = new Ajv({ allErrors: true, strict: false });
      const validate = ajv.compile(readJSON(schemaFile));
      const ok = validate(readJSON(valuesFile));
      const failures = ok ? [] : validate.errors.map((e) =>
        `${e.instancePath || "/"} ${e.message}${e.params?.additionalProperty ? ` (${e.params.additionalProperty})` : ""}`);
      bad += report(`values.schema.json: ${label}`, failures);
      break;
    }
    case "objects":
      for (const f of args)
        for (const e of readJSON(f)) {
          const d = e.doc;
          const label = `schema: ${d?.kind}/${d?.metadata?.name} (${e.source}#${e.index})`;
          bad += report(label, await validateObject(nodeModules, d));
        }
      break;
    case "chart": {
      const file = args[0];
      bad += report(`invariants: ${path.basename(file)}`, chartInvariants(docs(file), {
        gpu: args.includes("--gpu"), hpa: args.includes("--hpa"),
        serviceMonitor: args.includes("--service-monitor"),
        namespace: opt(args, "--namespace"), pathPrefix: opt(args, "--path-prefix"),
        gateway: opt(args, "--gateway"),
      }));
      break;
    }
    case "upgrade":
      bad += report(`upgrade to image.tag=${args[2]}`, upgradeInvariants(docs(args[0]), docs(args[1]), args[2]));
      break;
    case "config-roll":
      bad += report("a ConfigMap change rolls the pods", configRollInvariants(docs(args[0]), docs(args[1])));
      break;
    case "platform": {
      const pipeline = docs(opt(args, "--pipeline"));
      const spec = pipeline.find((d) => d.deploymentSpec) || {};
      const plat = pipeline.find((d) => d.platforms)?.platforms?.kubernetes?.deploymentSpec?.executors || {};
      const images = [...new Set(Object.values(spec.deploymentSpec?.executors || {})
        .map((x) => x.container?.image))];
      const secrets = new Map();
      for (const x of Object.values(plat))
        for (const s of x.secretAsEnv || []) {
          const keys = secrets.get(s.secretName) || new Set();
          for (const k of s.keyToEnv || []) keys.add(k.secretKey);
          secrets.set(s.secretName, keys);
        }
      const pipelineSecrets = [...secrets].map(([name, keys]) =>
        ({ namespace: "kubeflow", name, keys: [...keys] }));
      if (!pipelineSecrets.length) bad += report("pipeline", ["no secretAsEnv in the platform document"]);
      // The chart reads the same Secrets in the serving namespace.
      const cv = opt(args, "--chart-values") ? readJSON(opt(args, "--chart-values")) : null;
      if (cv) {
        pipelineSecrets.push({ namespace: opt(args, "--serving-namespace") || "kiln",
          name: cv.credentials.s3Secret, keys: ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] });
        if (cv.credentials.mlflowSecret)
          pipelineSecrets.push({ namespace: opt(args, "--serving-namespace") || "kiln",
            name: cv.credentials.mlflowSecret, keys: [] });
      }
      // The pipeline's parameter defaults and the chart's URLs must reach the platform.
      const params = spec.root?.inputDefinitions?.parameters || {};
      const endpoints = [
        { what: "pipeline minio_endpoint", url: params.minio_endpoint?.defaultValue },
        { what: "pipeline mlflow_tracking_uri", url: params.mlflow_tracking_uri?.defaultValue },
      ];
      if (cv) endpoints.push({ what: "chart mlflow.trackingUri", url: cv.mlflow.trackingUri },
        { what: "chart mlflow.s3EndpointUrl", url: cv.mlflow.s3EndpointUrl });
      bad += report(`platform invariants: ${args[0]}`, platformInvariants(docs(args[0]), {
        pipelineSecrets, pipelineImages: images, version: opt(args, "--version"), endpoints,
        // Services KFP's upstream manifests create (not copied here).
        externalHosts: { "ml-pipeline-ui.kubeflow": [80], "minio-service.kubeflow": [9000] },
      }));
      break;
    }
    default:
      console.error(`check.mjs: unknown command ${cmd}`);
      return 2;
  }
  return bad ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
