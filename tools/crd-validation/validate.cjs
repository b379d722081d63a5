// Validate custom resources with the CRD-derived validators of @kubernetes-models/gke (types, enums,
// patterns, required fields). Input: a JSON file holding [{file, doc}]; output: one JSON line per
// document, {file, kind, apiVersion, name, result: "valid" | "invalid" | "no-schema", errors}.
// Used by tests/deploy/test_validate_manifests.py; node_modules come from .tools/node (npm ci).
"use strict";
const fs = require("fs");
const path = require("path");

const [docsFile, nodeDir] = process.argv.slice(2);
const base = path.join(nodeDir, "node_modules", "@kubernetes-models", "gke");
for (const { file, doc } of JSON.parse(fs.readFileSync(docsFile, "utf8"))) {
  const [group, version] = doc.apiVersion.split("/");
  const out = { file, kind: doc.kind, apiVersion: doc.apiVersion, name: doc.metadata?.name, errors: [] };
  let Model;
  try {
    Model = require(path.join(base, group, version))[doc.kind];
  } catch {
    Model = undefined;
  }
  if (!Model) {
    out.result = "no-schema";
  } else {
    try {
      new Model(doc).validate();
      out.result = "valid";
    } catch (error) {
      out.result = "invalid";
      out.errors = [String(error.message)];
    }
  }
  console.log(JSON.stringify(out));
}
