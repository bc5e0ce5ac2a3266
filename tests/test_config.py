import pytest

from spaces.config import ExtractConfig, load_config, parse_overrides
from spaces.errors import SpacesError


def test_defaults_need_no_file():
    cfg = load_config(ExtractConfig)
    assert (cfg.data.id_field, cfg.data.text_field, cfg.data.summary_field) == ("id", "text", "summary")
    assert cfg.data.max_clauses == 256 and cfg.data.user_dict is None


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  text_field: source\n  max_clauses: 100\n")
    cfg = load_config(ExtractConfig, path, parse_overrides(["--data.max_clauses", "12", "--data.id_field=doc"]))
    assert (cfg.data.text_field, cfg.data.max_clauses, cfg.data.id_field) == ("source", 12, "doc")


def test_a_learning_rate_in_e_notation_is_a_number_on_the_command_line_and_in_a_file(tmp_path):
    """YAML 1.1 reads 2e-4 as a string, which a strict float refuses: 1.2's floats are read instead."""
    from spaces.config import EditConfig

    path = tmp_path / "c.yaml"
    path.write_text("train:\n  learning_rate: 3e-5\n")
    assert load_config(EditConfig, path).train.learning_rate == 3e-5
    cfg = load_config(EditConfig, path, parse_overrides(["--train.learning_rate", "2e-4", "--train.epochs", "3"]))
    assert cfg.train.learning_rate == 2e-4 and cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)


@pytest.mark.parametrize("pattern, schema", [("extract.yaml", "ExtractConfig"), ("generate.yaml", "GenerateConfig"),
                                             ("edit.yaml", "EditConfig"), ("summarize.yaml", "SummarizeConfig")])
def test_shipped_configs_load(pattern, schema):
    from pathlib import Path

    import spaces.config

    paths = sorted(Path(__file__).parent.parent.glob(f"configs/**/{pattern}"))
    assert paths
    for path in paths:
        load_config(getattr(spaces.config, schema), path)


@pytest.mark.parametrize("text, where, message", [
    ("data:\n  text_feild: x\n", "c.yaml", "data.text_feild: unknown config key"),
    ("dat:\n  text_field: x\n", "c.yaml", "dat: unknown config key"),
    ("data:\n  max_clauses: many\n", "c.yaml", "data.max_clauses: Input should be a valid integer"),
    ("data:\n  max_clauses: 0\n", "c.yaml", "data.max_clauses: Input should be greater than or equal to 1"),
    ("- a\n- b\n", "c.yaml", "must be a mapping"),
    ("data: [unclosed\n", "c.yaml:2", "not valid YAML"),
])
def test_bad_files_name_the_key(tmp_path, text, where, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(SpacesError) as e:
        load_config(ExtractConfig, path)
    assert e.value.where == str(tmp_path / where)
    assert message in e.value.message


@pytest.mark.parametrize("args, where, message", [
    (["--data.nope", "1"], "--data.nope", "unknown config key"),
    (["--nope.key", "1"], "--nope.key", "unknown config key"),
    (["--data.max_clauses", "x"], "--data.max_clauses", "valid integer"),
    (["--data.text_field.deeper", "x"], "--data.text_field.deeper", "valid string"),
])
def test_bad_overrides_name_the_flag(args, where, message):
    with pytest.raises(SpacesError) as e:
        load_config(ExtractConfig, None, parse_overrides(args))
    assert e.value.where == where and message in e.value.message


@pytest.mark.parametrize("args, message", [
    (["stray"], "unexpected argument"),
    (["--data.text_field"], "needs a value"),
    (["--verbose", "1"], "unknown option --verbose"),
])
def test_malformed_override_lines(args, message):
    with pytest.raises(SpacesError, match=message):
        parse_overrides(args)
