// Static checks of containers/Dockerfile.* (no Docker engine here):
//   node dockerfile.mjs DOCKERFILE [--install-deps scripts/install-deps.sh] [--dockerignore F]
//                      [--binaries BUILD_DIR] | --print-runtime-packages
// Stages build, runtime, components, serving; no compilers or -dev packages at run time and a
// runtime library for every -dev package built against; a numeric non-root USER; exec-form
// ENTRYPOINTs of the kiln binaries; the OCI version label; COPY sources not dockerignored.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, realpathSync } from "node:fs";
import path from "node:path";

const [file, ...args] = process.argv.slice(2);
const opt = (n) => { const i = args.indexOf(n); return i >= 0 ? args[i + 1] : undefined; };
const root = path.resolve(path.dirname(file), "..");
const failures = [];
const fail = (m) => failures.push(m);

// Instructions with continuations joined; comments dropped.
const lines = readFileSync(file, "utf8").split("\n");
const instrs = [];
let cur = "";
for (const raw of lines) {
  if (!cur && /^\s*#/.test(raw)) continue;
  const l = raw.replace(/\s+$/, "");
  if (l.endsWith("\\")) { cur += l.slice(0, -1) + " "; continue; }
  cur += l;
  if (cur.trim()) {
    const m = cur.trim().match(/^(\w+)\s+(.*)$/s);
    if (m) instrs.push({ op: m[1].toUpperCase(), arg: m[2] });
  }
  cur = "";
}
const stages = [];
for (const i of instrs) {
  if (i.op === "FROM") {
    const m = i.arg.match(/^(\S+)(?:\s+AS\s+(\S+))?/i);
    stages.push({ from: m[1], name: m[2] || "", instrs: [] });
  } else if (stages.length) stages.at(-1).instrs.push(i);
}
const stage = (n) => stages.find((s) => s.name === n);
for (const n of ["build", "runtime", "components", "serving"]) if (!stage(n)) fail(`no stage ${n}`);

const aptPackages = (s) => (s?.instrs || []).filter((i) => i.op === "RUN")
  .flatMap((i) => [...i.arg.matchAll(/apt-get install ([^&;]*)/g)])
  .flatMap((m) => m[1].split(/\s+/)).filter((w) => w && !w.startsWith("-"));
const buildPkgs = aptPackages(stage("build"));
const runPkgs = aptPackages(stage("runtime"));
if (args.includes("--print-runtime-packages")) {
  console.log(runPkgs.join(","));
  process.exit(runPkgs.length ? 0 : 1);
}
for (const p of runPkgs)
  if (/-dev$/.test(p) || ["build-essential", "cmake", "ninja-build", "gcc", "pkg-config"].includes(p))
    fail(`runtime stage installs the build tool/header package ${p}`);
// libzip-dev -> libzip4, libcurl4-openssl-dev -> libcurl4t64, libsqlite3-dev -> libsqlite3-0 ...
for (const dev of buildPkgs.filter((p) => /^lib.*-dev$/.test(p))) {
  const stem = dev.replace(/-dev$/, "").replace(/-openssl$/, "").replace(/[0-9]+$/, "");
  if (!runPkgs.some((r) => r.startsWith(stem)))
    fail(`built against ${dev} but the runtime stage installs no ${stem}* library`);
}
if (opt("--install-deps")) {
  // The image builds what CI builds: every library -dev package of install-deps.sh but the
  // test-only ones.
  const text = readFileSync(opt("--install-deps"), "utf8");
  const list = text.slice(text.indexOf("packages=("), text.indexOf(")", text.indexOf("packages=(")));
  const devs = [...list.matchAll(/\b(lib[\w.+-]*-dev)\b/g)].map((m) => m[1])
    .filter((p) => !/cmocka|clang/.test(p));
  for (const d of devs) if (!buildPkgs.includes(d)) fail(`install-deps.sh builds with ${d}; the build stage lacks it`);
}

const rt = stage("runtime");
const user = (rt?.instrs || []).filter((i) => i.op === "USER").at(-1)?.arg || "";
if (!/^[1-9][0-9]*(:[1-9][0-9]*)?$/.test(user)) fail(`runtime USER is '${user}', want a numeric non-root uid[:gid]`);
for (const s of ["components", "serving"])
  if ((stage(s)?.instrs || []).some((i) => i.op === "USER")) fail(`stage ${s} changes USER`);
const labels = (rt?.instrs || []).filter((i) => i.op === "LABEL").map((i) => i.arg).join(" ");
if (!/org\.opencontainers\.image\.version="\$\{KILN_VERSION\}"/.test(labels)) fail("no org.opencontainers.image.version label from KILN_VERSION");
if (!(rt?.instrs || []).some((i) => i.op === "ARG" && /^KILN_VERSION\b/.test(i.arg))) fail("runtime stage lacks ARG KILN_VERSION");
for (const [s, bin] of [["components", "/opt/kiln/bin/kiln-component"], ["serving", "/opt/kiln/bin/kiln-serve"]]) {
  const ep = (stage(s)?.instrs || []).filter((i) => i.op === "ENTRYPOINT").at(-1)?.arg;
  let parsed = null;
  try { parsed = JSON.parse(ep); } catch { /* shell form */ }
  if (!Array.isArray(parsed) || parsed[0] !== bin) fail(`stage ${s}: ENTRYPOINT ${ep}, want exec form ["${bin}", ...]`);
  if (stage(s) && stage(s).from !== "runtime") fail(`stage ${s} is not FROM runtime`);
}

// COPY sources from the context must exist and not be dockerignored.
const ignore = opt("--dockerignore") ? readFileSync(opt("--dockerignore"), "utf8").split("\n")
  .map((l) => l.trim()).filter((l) => l && !l.startsWith("#")) : [];
const ignored = (p) => ignore.some((pat) => {
  const re = new RegExp("^" + pat.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*") + "(/|$)");
  return re.test(p);
});
for (const s of stages)
  for (const i of s.instrs) {
    if (i.op === "RUN") for (const m of i.arg.matchAll(/install -D -m \d+ (\S+)/g)) {
      if (!existsSync(path.join(root, m[1]))) fail(`${m[1]} (installed into the image) does not exist`);
      if (ignored(m[1])) fail(`${m[1]} (installed into the image) is excluded by .dockerignore`);
    }
  }
for (const need of ["CMakeLists.txt", "lib", "cli", "serving", "components", "tracking", "bench"])
  if (ignored(need)) fail(`.dockerignore excludes ${need}, which the build needs`);

// With a build of this machine (Debian 12, like the CPU image): every shared library the
// binaries link directly belongs to a package the runtime stage installs (or to the base).
if (opt("--binaries")) {
  const dir = opt("--binaries");
  const base = new Set(["libc6", "libgcc-s1", "libstdc++6", "zlib1g"]);
  const bins = ["cli/kiln", "components/kiln-component", "serving/kiln-serve", "tracking/kiln-tracking"];
  const sh = (cmd, a) => execFileSync(cmd, a, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  let checked = 0;
  for (const b of bins.map((x) => path.join(dir, x))) {
    if (!existsSync(b)) { fail(`--binaries: ${b} does not exist`); continue; }
    const paths = new Map([...sh("ldd", [b]).matchAll(/^\s*(\S+) => (\/\S+)/gm)].map((m) => [m[1], m[2]]));
    const needed = [...sh("readelf", ["-d", b]).matchAll(/\(NEEDED\)\s+Shared library: \[(.+)\]/g)].map((m) => m[1]);
    for (const so of needed) {
      if (/^(libasan|libubsan)/.test(so)) { fail(`${b} is a sanitizer build: use a plain one`); continue; }
      const where = paths.get(so);
      if (!where) { fail(`${b}: ${so} not found by ldd`); continue; }
      // usrmerge: dpkg may know the file as /lib/... or /usr/lib/..., by real path or link.
      const real = realpathSync(where);
      let pkg = "";
      for (const cand of [real, real.replace(/^\/usr/, ""), where, where.replace(/^\/usr/, "")]) {
        try { pkg = sh("dpkg", ["-S", cand]).split(":")[0]; break; } catch { /* next */ }
      }
      if (!pkg) { fail(`${b}: no Debian package owns ${where}`); continue; }
      checked++;
      if (!base.has(pkg) && !runPkgs.includes(pkg))
        fail(`${path.basename(b)} links ${so} (package ${pkg}), which the runtime stage does not install`);
    }
  }
  if (checked) console.log(`ok   ${path.basename(file)}: ${checked} direct library links of ${dir}'s binaries are installed at run time`);
}

for (const f of failures) console.log(`FAIL ${path.basename(file)}: ${f}`);
if (!failures.length) console.log(`ok   ${path.basename(file)}: ${stages.length} stages, runtime ${runPkgs.length} packages, USER ${user}`);
process.exitCode = failures.length ? 1 : 0;
