"""LVLM backends behind one interface (`icl_kit.lvlm.base.LVLM`).

`registry.build_lvlm` picks one by `lvlm.backend`; backends are imported lazily, so the
simulated LVLM of the demo world does not pay for importing transformers.
"""
