import warnings

import pytest


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``exported(name)``: the path of the model exported once per test session."""
    pytest.importorskip("torch", reason="exporting the models needs torch (pip install onnxpred[models])")
    from onnxpred.models.export import export_model

    folder = tmp_path_factory.mktemp("exported")
    paths = {}

    def export(name: str):
        if name not in paths:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # random weights, legacy exporter
                export_model(name, folder / f"{name}.onnx")
            paths[name] = folder / f"{name}.onnx"
        return paths[name]

    return export
