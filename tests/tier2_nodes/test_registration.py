"""The pack registers through comfy_entrypoint only, and every node's schema is well kept."""

from __future__ import annotations

import asyncio

import pytest


@pytest.fixture(scope="module")
def node_classes(pack):
    extension = asyncio.run(pack.comfy_entrypoint())
    return asyncio.run(extension.get_node_list())


def test_registration_is_v3_only(pack):
    assert getattr(pack, "NODE_CLASS_MAPPINGS", None) is None
    assert getattr(pack, "NODE_DISPLAY_NAME_MAPPINGS", None) is None


def test_the_entrypoint_lists_every_node_once_with_the_pack_prefix(pack, node_classes):
    from region_repair.nodes import NODE_ID_PREFIX, NODES
    from comfy_server import pack_node_ids

    ids = [cls.GET_SCHEMA().node_id for cls in node_classes]
    assert node_classes == NODES
    assert len(ids) == len(set(ids))
    assert all(node_id.startswith(NODE_ID_PREFIX) for node_id in ids)
    # The server tier finds the expected ids by reading the sources: keep both views in step.
    assert sorted(ids) == sorted(pack_node_ids())


def test_every_node_has_a_description_and_every_input_a_tooltip(node_classes):
    for cls in node_classes:
        schema = cls.GET_SCHEMA()
        assert len(schema.description) > 40, schema.node_id
        assert schema.category.startswith("region_repair/"), schema.node_id
        for item in schema.inputs:
            assert item.tooltip, f"{schema.node_id}.{item.id} has no tooltip"
