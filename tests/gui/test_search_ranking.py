"""The node search ranks what people connect most first, judged from the schema alone: a wire
dragged from a LATENT output listed Save Latent before VAE Decode and KSampler; loose queries
("vae dec", "clip enc") listed scattered-letter matches right after the right node, and plain
names ("vae", "checkpoint") put a saver first."""

from __future__ import annotations

from PySide6.QtCore import QPointF

from tests.gui.conftest import add, drag, port_point


def test_a_latent_wire_offers_decode_and_sampler_first_and_savers_last(window, qtbot):
    ks = add(window, "KSampler", 0, 0)
    out = window.scene.items_by_id[ks].outputs[0]["name"]
    drag(window, port_point(window, ks, "out", out), QPointF(500, 60))
    search = window.search
    assert search.isVisible()
    types = search.types()
    assert set(types[:2]) == {"VAEDecode", "KSampler"}, types[:6]
    # savers and previews of a latent come after every node that carries it on
    savers = [t for t in types if window.schema.get(t).is_output]
    assert savers and all(types.index(s) > types.index("LatentUpscale") for s in savers)
    assert types.index("VAEDecode") < types.index("VAEDecodeTiled")  # the plain one before its variant
    qtbot.keyClicks(search.edit, "dec")
    assert search.types()[0] == "VAEDecode"
    qtbot.keyClick(search.edit, "\r")
    new = max(window.doc.nodes, key=int)
    assert window.doc.nodes[new]["type"] == "VAEDecode"
    assert window.doc.nodes[new]["inputs"]["samples"] == {"from": [ks, out]}


def test_other_wires_lead_on_and_images_still_end_in_preview(window):
    schema = window.schema
    assert schema.product_type == "IMAGE"
    assert [i.type for i in schema.search("", accepts="CONDITIONING")][0] == "KSampler"
    assert [i.type for i in schema.search("", accepts="MODEL")][0] == "KSampler"
    assert [i.type for i in schema.search("", accepts="IMAGE")][:2] == ["PreviewImage", "SaveImage"]
    mask = [i.type for i in schema.search("", accepts="MASK", limit=500)]
    assert mask.index("MaskPreview") > mask.index("InvertMask")


def test_loose_queries_find_the_right_node_first(window, qtbot):
    window.view.setFocus()
    for typed, want in (("vae dec", "VAEDecode"), ("ksam", "KSampler"), ("clip enc", "CLIPTextEncode"),
                        ("vae", "VAEDecode"), ("checkpoint", "CheckpointLoader"), ("emp lat", "EmptyLatentImage"),
                        ("up lat", "LatentUpscale"), ("text enc", "CLIPTextEncode"), ("decode latent", "VAEDecode")):
        window.search.open_at(QPointF(0, 0), window.view.mapToGlobal(window.view.rect().center()))
        qtbot.keyClicks(window.search.edit, typed)
        found = window.search.types()
        assert found[0] == want, (typed, found[:4])
        window.search.hide()
    # no scattered-letter noise after the names that match word by word
    assert [i.type for i in window.schema.search("vae dec")] == ["VAEDecode", "VAEDecodeTiled"]
    # the description counts too, below the names: "denoise" finds the sampler
    assert "KSampler" in [i.type for i in window.schema.search("denoise")]
