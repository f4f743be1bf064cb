"""What importing a part of aitrace pulls in: the detectors load no Kafka, Faust or search client."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("faust", "confluent_kafka", "aiokafka", "elasticsearch", "elastic_transport", "fastavro")


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return [m for m in out.stdout.split() if m.split(".")[0] in HEAVY]


def test_import_aitrace_detect_loads_no_kafka_faust_or_elasticsearch() -> None:
    assert _loaded_after("import aitrace.detect; aitrace.detect.anomaly_scores([1.0, 2.0, 3.0])") == []


def test_the_root_package_loads_the_client_on_first_use() -> None:
    assert _loaded_after("import aitrace") == []
    assert "confluent_kafka" in _loaded_after("import aitrace; aitrace.init")


def test_the_root_import_loads_no_kafka_client() -> None:
    """``import aitrace`` (and its version, and the producer package itself) loads no confluent_kafka."""
    loaded = _loaded_after("import aitrace, aitrace.producers; aitrace.__version__; aitrace.detect")
    assert not [m for m in loaded if m.split(".")[0] == "confluent_kafka"], loaded


def test_drop_event_is_a_root_name_that_loads_no_kafka_client() -> None:
    """A processor module can raise ``aitrace.DropEvent`` without loading the client."""
    statement = "import aitrace.producers.events as ev; from aitrace import DropEvent; assert DropEvent is ev.DropEvent"
    assert _loaded_after(statement) == []


def test_the_integrations_are_attributes_of_the_root() -> None:
    """``aitrace.<integration>`` is ``aitrace.producers.<integration>``, loaded on first use."""
    code = (
        "import sys, aitrace\n"
        "assert 'aitrace.producers.wsgi' not in sys.modules\n"
        "assert aitrace.wsgi is sys.modules['aitrace.producers.wsgi']\n"
        "assert aitrace.inference.traced is aitrace.producers.inference.traced\n"
        "assert aitrace.producers.client.init is aitrace.init\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "ok"


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    code = "import aitrace\ntry:\n    aitrace.no_such_thing\nexcept AttributeError as e:\n    print(e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "no attribute 'no_such_thing'" in out.stdout


def test_the_integration_names_are_producer_modules_and_known_to_static_tools() -> None:
    """``_INTEGRATIONS`` (run time) and the TYPE_CHECKING imports (mypy, editors) name the same modules."""
    import ast
    from pathlib import Path

    import aitrace

    root = Path(__file__).resolve().parent.parent
    tree = ast.parse((root / "aitrace" / "__init__.py").read_text(encoding="utf-8"))
    typed = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "aitrace.producers"
        for alias in node.names
    }
    assert typed == set(aitrace._INTEGRATIONS)
    assert all((root / "producers" / f"{name}.py").is_file() for name in typed)
    # The lazy re-exports too: each is imported for static tools from the module it loads from, and public.
    exported = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module not in ("aitrace.producers", "typing")
        for alias in node.names
    }
    assert exported == {(module, name) for name, module in aitrace._EXPORTS.items()}
    assert set(aitrace._EXPORTS) <= set(aitrace.__all__)
