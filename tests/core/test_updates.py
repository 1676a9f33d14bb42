"""Flatten / unflatten and the output-layer layout."""

import numpy as np

from fl_poison.updates import flatten, make_layout, unflatten


def _arrays():
    return (["conv.weight", "fc.weight", "fc.bias", "bn.num_batches_tracked"],
            [np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(12, dtype=np.float32).reshape(3, 4),
             np.array([100, 101, 102], dtype=np.float32), np.array(7, dtype=np.int64)])


def test_roundtrip_keeps_shapes_and_dtypes():
    names, arrays = _arrays()
    layout = make_layout(names, arrays, "fc")
    flat = flatten(arrays)
    assert flat.shape == (6 + 12 + 3 + 1,) and layout.num_params == 22
    back = unflatten(flat, layout)
    for a, b in zip(arrays, back):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_output_rows_are_weights_then_bias_per_neuron():
    names, arrays = _arrays()
    layout = make_layout(names, arrays, "fc")
    flat = np.stack([flatten(arrays), 2 * flatten(arrays)])
    rows = layout.output_rows(flat)
    assert rows.shape == (2, 3, 5) and layout.num_classes == 3
    assert rows[0, 1].tolist() == [4, 5, 6, 7, 101]
    assert rows[1, 2].tolist() == [16, 18, 20, 22, 204]
    assert layout.output_layer(flat[0]).shape == (15,)


def test_infer_layout_finds_last_2d_array_and_its_bias():
    from fl_poison.updates import infer_layout

    names, arrays = _arrays()
    lay = infer_layout([str(i) for i in range(len(arrays))], arrays)
    assert (lay.output_weight, lay.output_bias) == (1, 2)
    assert infer_layout(names, arrays, "fc") == lay.__class__(**{**lay.__dict__, "names": tuple(names)})
    no_bias = infer_layout(["a", "b"], [np.zeros((3, 4)), np.zeros(5)])
    assert no_bias.output_bias is None
