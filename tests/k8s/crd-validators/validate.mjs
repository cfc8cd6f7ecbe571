// Reads a JSON array of Kubernetes objects on stdin; for each custom resource this knows, prints
// one JSON line {kind, name, ok, error}. Kinds it does not know are reported as unknown.
import { readFileSync } from "node:fs";

const MODELS = {
  "keda.sh/v1alpha1/ScaledObject": "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject",
  "monitoring.coreos.com/v1/ServiceMonitor": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor",
  "gateway.networking.k8s.io/v1/HTTPRoute": "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute",
  "gateway.networking.k8s.io/v1/GRPCRoute": "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/GRPCRoute",
};

const objects = JSON.parse(readFileSync(0, "utf8"));
for (const object of objects) {
  const key = `${object.apiVersion}/${object.kind}`;
  const name = object.metadata?.name;
  if (!(key in MODELS)) {
    console.log(JSON.stringify({ kind: key, name, ok: false, error: "unknown" }));
    continue;
  }
  const module = await import(MODELS[key]);
  const Model = module[object.kind];
  try {
    new Model(object).validate();
    console.log(JSON.stringify({ kind: key, name, ok: true }));
  } catch (error) {
    console.log(JSON.stringify({ kind: key, name, ok: false, error: String(error.message || error) }));
  }
}
