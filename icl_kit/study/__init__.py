"""The existing study's world, in one wing (`icl-kit study <verb>`).

Everything that reads or explains the study's own files lives here: its result files and their import
(`import_results`), its RL data (`rollouts`), its InfoScore beam JSON (`beams`), its checkpoint layouts
and renames and its RandSampler (`formats`), the audit of its files (`audit`), and the re-test of its
claims (`claims`, `retest`). The core loads the kit's own formats and asks `study.formats` for anything
else; the wing writes ordinary run artefacts (eval/imported.csv, rollouts.jsonl, sft_data.jsonl,
pools.json), which the stages read like any other. docs/study.md describes the formats and defects.
"""
