// Validates Strimzi resources (kafka.strimzi.io) with the validators compiled
// from Strimzi's CRDs that @kubernetes-models/strimzi-kafka-operator ships.
// Usage: node strimzi_validate.mjs <node_modules dir>  < objects.json
// stdin: a JSON array of Kubernetes objects; stdout: a JSON array, one entry per
// object: {"ok": true} or {"ok": false, "errors": [...]}.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
if (!modules) {
  console.error("usage: node strimzi_validate.mjs <node_modules dir> < objects.json");
  process.exit(2);
}
const schemas = join(modules, "@kubernetes-models", "strimzi-kafka-operator", "_schemas");
const objects = JSON.parse(readFileSync(0, "utf8"));

function schemaFile(obj) {
  // kafka.strimzi.io/v1beta2 + Kafka -> KafkaStrimziIoV1beta2Kafka.js
  const [group, version] = String(obj.apiVersion).split("/");
  const prefix = group
    .split(".")
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join("");
  return join(schemas, `${prefix}${version.charAt(0).toUpperCase()}${version.slice(1)}${obj.kind}.js`);
}

const results = [];
for (const obj of objects) {
  const file = schemaFile(obj);
  if (!existsSync(file)) {
    results.push({ ok: false, errors: [`no schema for ${obj.apiVersion} ${obj.kind} (${file})`] });
    continue;
  }
  const { validate } = await import(pathToFileURL(file).href);
  if (validate(obj)) {
    results.push({ ok: true });
  } else {
    results.push({
      ok: false,
      errors: validate.errors.map((e) => `${e.instancePath || "/"}: ${e.keyword} ${JSON.stringify(e.params)}`),
    });
  }
}
process.stdout.write(JSON.stringify(results));
