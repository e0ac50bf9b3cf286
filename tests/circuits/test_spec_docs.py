"""docs/spec.md and docs/spec.schema.json stay true: the schema is the generated one, every
example loads and validates, and the demo-lm specs shown are the ones `interp demo-lm` writes."""
import json
import re
from pathlib import Path

import pytest
import yaml

import hooks
from interp.spec_schema import json_schema

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _yaml_blocks():
    return re.findall(r"```yaml\n(.*?)```", (DOCS / "spec.md").read_text(), re.S)


def test_schema_file_is_generated_from_the_dataclasses():
    assert json.loads((DOCS / "spec.schema.json").read_text()) == json_schema()


def test_every_documented_example_loads_and_validates():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json_schema())
    examples = yaml.safe_load(_yaml_blocks()[0])
    ivs = hooks.load_spec(examples)
    assert sorted({type(i).__name__ for i in ivs}) == ["Ablate", "Cache", "Edit", "Knockout", "Patch", "Steer"]
    validator.validate(examples)
    validator.validate(json.loads(hooks.dump_spec(ivs, "json")))  # what save_spec writes validates too
    assert not validator.is_valid([{"type": "ablate", "method": "average"}])
    assert not validator.is_valid([{"type": "steer", "sites": "x", "vector": [1.0], "colour": 1}])
    assert validator.is_valid([{"type": "knockout", "mode": "mask"}])  # old names stay valid


def test_demo_lm_specs_in_the_docs_are_what_the_demo_writes():
    from interp.demo import SPECS

    text = (DOCS / "spec.md").read_text()
    for name, spec in SPECS.items():
        line = yaml.safe_dump(hooks.load_spec(spec)[0].to_dict(), default_flow_style=True, sort_keys=False, width=1000)
        assert f"# {name}.yaml\ninterventions:\n- {line.strip()}" in text, name
