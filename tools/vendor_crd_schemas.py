"""Write tests/k8s/schemas/*.json: JSON schemas of the KEDA and Prometheus Operator custom
resources the manifests use, from the cloudcoil model packages (generated from those projects'
CRDs; the versions below are the upstream releases they were generated from), made strict: an
object with declared properties accepts no other key (a misspelt field fails, where the API
server would drop it without a word).

    python tools/vendor_crd_schemas.py     # a throwaway virtualenv; needs PyPI

The files are committed; the tests read them and need no network."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "k8s" / "schemas"
SOURCES = {
    # file: (pip requirement, module, class, upstream project and release)
    "keda.sh_v1alpha1_scaledobject.json": (
        "cloudcoil-models-keda==2.16.1.0", "cloudcoil.models.keda.v1alpha1", "ScaledObject", "KEDA v2.16.1"),
    "monitoring.coreos.com_v1_servicemonitor.json": (
        "cloudcoil-models-prometheus-operator==0.80.1.0", "cloudcoil.models.prometheus_operator.v1",
        "ServiceMonitor", "prometheus-operator v0.80.1"),
}

_GENERATE = """
import importlib, json, sys
module, name = sys.argv[1], sys.argv[2]
print(json.dumps(getattr(importlib.import_module(module), name).model_json_schema(by_alias=True)))
"""


_SCHEMA_MAPS = ("properties", "$defs", "patternProperties")  # name -> schema: every name is kept
_SCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")


def strict(schema: object) -> object:
    """Every object schema with properties gets additionalProperties: false (unless it says);
    titles and descriptions go (pydantic's, not the CRD's: they only add bytes)."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, object] = {}
    for key, value in schema.items():
        if key in ("title", "description"):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: strict(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [strict(sub) for sub in value]
        elif key in ("items", "additionalProperties", "not"):
            out[key] = strict(value)
        else:
            out[key] = value
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        venv.create(tmp, with_pip=True)
        python = str(Path(tmp) / "bin" / "python")
        requirements = [source[0] for source in SOURCES.values()]
        subprocess.run([python, "-m", "pip", "install", "-q", *requirements], check=True)
        for filename, (requirement, module, name, upstream) in SOURCES.items():
            raw = subprocess.run([python, "-c", _GENERATE, module, name], check=True, capture_output=True, text=True)
            schema = strict(json.loads(raw.stdout))
            assert isinstance(schema, dict)
            schema = {"$comment": f"{name} from {requirement} (generated from {upstream}'s CRD), made strict "
                                  "by tools/vendor_crd_schemas.py", **schema}
            (OUT / filename).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
            print(f"{filename}: {name} from {requirement} ({upstream})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
