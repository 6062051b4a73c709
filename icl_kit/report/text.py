"""Report wording: number formats shared by both languages, and the zh/en phrase tables.

Every number in the report is formatted here, once, before it is put into a
phrase; the zh and en phrases take the same named fields and carry no digits of
their own beyond those they share. So the two reports hold the same numbers.

Formats (docs/design.md, "Report"): percentages with one decimal (`60.0%`); differences
in points with a sign (`+6.0`, `−3.9`, U+2212 minus); intervals `[−3.9, +5.8]`;
interval ends that round to 0.0 get the decimals that show their side of 0 (`[−0.03, +1.2]`);
p-values `0.91`, `0.0496` (3 significant figures in 0.01..0.1, so 0.0496 and 0.0504 differ), `0.008`,
`<0.001`; counts grouped with a narrow no-break space
(`2 900`).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from icl_kit.core.config.params import ALPHA
from icl_kit.lvlm.work import QWEN2_5_VL_3B, Work, flops
from icl_kit.report.phrases import PHRASES
from icl_kit.stats.pooled import POOLED_SHOT
from icl_kit.stats.verdict import verdict_kind, verdict_margin

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MINUS = "\u2212"
GROUP_SEP = "\u202f"  # narrow no-break space between digit groups
DASH = "—"  # a value that does not exist (nan)
P_FLOOR = 0.001  # p below this prints as "<0.001"
P_TWO_DECIMALS = 0.1  # p at or above this prints with two decimals
P_SIGNIFICANT = 0.01  # p in [P_SIGNIFICANT, P_TWO_DECIMALS) prints with 3 significant figures, below with 3 decimals
MAX_END_DECIMALS = 9  # the points of comparisons.csv carry 9 decimals
UP, DOWN = "⬆️", "⬇️"
ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII")


# ------------------------------------------------------------------ numbers
def _finite(x: float | None) -> bool:
    return isinstance(x, numbers.Real) and math.isfinite(x)


def pct(x: float | None) -> str:
    """Accuracy in percent: `60.0%`."""
    return f"{x:.1f}%" if _finite(x) else DASH


def num(x: float | None, decimals: int = 1) -> str:
    """A plain number with a real minus sign: `4.8`, `−0.3`."""
    if not _finite(x):
        return DASH
    text = f"{x:.{decimals}f}"
    if float(text) == 0:
        text = text.lstrip("-")
    return text.replace("-", MINUS)


def pts(x: float | None, decimals: int = 1) -> str:
    """A difference in points with its sign: `+6.0`, `−3.9`, `0.0`."""
    text = num(x, decimals)
    return text if text in (DASH,) or text.startswith(MINUS) or float(text) == 0 else f"+{text}"


def end(x: float | None) -> str:
    """An interval end: as `pts`, but one that rounds to 0.0 gets the decimals that show its side of 0
    (`−0.03`, `+0.004`); 0, and float noise below 1e-9, stay `0.0`."""
    if not _finite(x) or x == 0 or round(x, 1) != 0:
        return pts(x)
    decimals = min(MAX_END_DECIMALS, -math.floor(math.log10(abs(x))))
    return pts(x, decimals) if round(x, decimals) != 0 else pts(x)


def ci(low: float | None, high: float | None) -> str:
    """An interval of differences: `[−3.9, +5.8]`, `[−0.03, +1.2]`."""
    return f"[{end(low)}, {end(high)}]"


CORRECTION_NAMES = {"holm": "Holm", "fdr_bh": "Benjamini–Hochberg (FDR)"}


def level_text(level: float) -> str:
    """An interval level: 0.95 -> `95%`, 0.9 -> `90%`, 0.99 -> `99%`, 0.975 -> `97.5%`."""
    text = f"{level * 100:.1f}".removesuffix(".0")
    return f"{text}%"


def share(x: float) -> str:
    """A proportion as a whole percentage: 0.8 -> `80%`."""
    return f"{x * 100:.0f}%" if _finite(x) else DASH


def p_is(p: float | None) -> str:
    """A p-value in prose: `= 0.91`, `< 0.001` (a missing one is a dash)."""
    text = pval(p)
    return text.replace("<", "< ") if text.startswith("<") else text if text == DASH else f"= {text}"


def pval(p: float | None) -> str:
    """`0.91`, `0.0496`, `0.008`, `<0.001`; a missing p is a dash. Between 0.01 and 0.1, where p meets the
    usual α, 3 significant figures (0.0496 and 0.0504 read differently; a rounded 0.050 would not)."""
    if not _finite(p):
        return DASH
    if p < P_FLOOR:
        return f"<{P_FLOOR:g}"
    if p >= P_TWO_DECIMALS:
        return f"{p:.2f}"
    return f"{p:#.3g}" if p >= P_SIGNIFICANT else f"{p:.3f}"


def p_bound(p: float | None, at_floor: bool) -> str:
    """An adjusted p whose raw p sat at the permutation floor is an upper bound: `≤0.009`."""
    text = pval(p)
    return f"≤{text}" if at_floor and text[:1].isdigit() else text


def p_bound_is(p: float | None, at_floor: bool) -> str:
    """`p_bound` in prose: `≤ 0.009`, else as `p_is`."""
    text = p_bound(p, at_floor)
    return text.replace("≤", "≤ ") if text.startswith("≤") else p_is(p)


def count(n: float | None) -> str:
    """An integer with grouped thousands: `2 900`."""
    if not _finite(n):
        return DASH
    return f"{int(round(n)):,}".replace(",", GROUP_SEP)


def approx_n(n: float | None) -> str:
    """A sample size needed, rounded as an estimate: 2873 -> `2 900`, 412 -> `410`, 87 -> `87`."""
    if not _finite(n):
        return DASH
    step = 100 if n >= 1000 else 10 if n >= 100 else 1
    return count(math.ceil(n / step) * step)


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    """A markdown table; a '|' inside a cell is escaped."""
    def cell(x: object) -> str:
        return str(x).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(map(cell, r)) + " |" for r in rows])


def is_pooled(shot: object) -> bool:
    """A comparisons.csv row pooled over shots (shot POOLED_SHOT), or a best-epoch entry joint over them ('all')."""
    return str(shot) in (str(POOLED_SHOT), "all")


def shot_order(shot: object) -> tuple[int, int]:
    """Sort key of a shot column: the shots in order, the row pooled over them last."""
    return (1, 0) if is_pooled(shot) else (0, int(shot))


def shots_text(shots: object) -> str:
    """The shots of a pooled row ('1,2,3,4' in comparisons.csv, [1, 2, 3, 4] in summary.json) as the report
    writes them: `1–4`; with a gap `1–2, 4`."""
    runs: list[list[int]] = []
    for k in sorted({int(x) for x in re.findall(r"\d+", str(shots))}):
        if runs and k == runs[-1][1] + 1:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    return ", ".join(f"{a}–{b}" if b > a else f"{a}" for a, b in runs)


def need_text(row: object) -> str:
    """Questions needed to detect the margin, one text for every place the report prints it: a paired row's
    n (`n_needed`); a summary-only row's range for a paired re-measurement (`n_needed_lo`–`n_needed_hi`, answer
    correlation 0.8–0.3), since summaries cannot say which; a dash when unknown."""
    get = row.get if hasattr(row, "get") else (lambda k, d=None: getattr(row, k, d))
    lo, hi = get("n_needed_lo", math.nan), get("n_needed_hi", math.nan)
    if get("mode", "paired") == "summary" and _finite(lo) and _finite(hi):
        return f"{approx_n(lo)}–{approx_n(hi)}"
    return approx_n(get("n_needed", math.nan))


class Text:
    """Phrase lookup for one language: `t("v_better")`, `t("f_significant", b=..., ...)`."""

    def __init__(self, language: str, alpha: float = ALPHA) -> None:
        if language not in PHRASES:
            raise ValueError(f"report.language={language!r} is not supported; choose one of {list(PHRASES)}.")
        self.language = language
        self.table = PHRASES[language]
        # interval levels follow stats.alpha: 1 - alpha for differences, 1 - 2 alpha for TOST
        self.defaults = {"level": level_text(1 - alpha), "tost_level": level_text(1 - 2 * alpha)}

    def __call__(self, key: str, **fields: object) -> str:
        return self.table[key].format(**{**self.defaults, **fields})

    def section(self, index: int, name: str | None = None) -> str:
        """Numbered section heading: `## 三、结果对比` / `## III. Results` (`name` replaces the usual one)."""
        names = self.table["sec_names"].split("|")
        zh_numerals = "一二三四五六七"
        roman = zh_numerals[index] if self.language == "zh" else ROMAN[index]
        return self("sec", roman=roman, name=name or names[index])

    def verdict(self, verdict: str, need: str | None, margin: float) -> str:
        """The verdict cell: significant, equivalent (±δ), or no detectable difference (`need`: the questions
        needed to detect δ, as `need_text` prints them)."""
        kind = verdict_kind(verdict)
        if kind == "equivalent":
            return self("v_equivalent", margin=num(verdict_margin(verdict, margin)))
        if kind == "inconclusive":
            return (self("v_inconclusive_n", n=need, margin=num(margin)) if need and need != DASH
                    else self("v_inconclusive"))
        return self(f"v_{kind}")

    def shot(self, shot: object, shots: object = None) -> str:
        """A row's shot: `2`, or for a row pooled over the shots `1–4 (all shots)`."""
        return self("shot_pooled", shots=shots_text(shots)).strip() if is_pooled(shot) else str(shot)

    def join(self, items: list[str], limit: int = 4) -> str:
        """`a、b、c` / `a, b, c`, shortened with "and k more" past `limit` items."""
        shown = items[:limit]
        text = self("list_sep").join(shown)
        rest = len(items) - len(shown)
        return f"{text} {self('and_more', k=rest)}" if rest > 0 else text

    def subset_label(self, subset: str) -> str:
        if m := re.fullmatch(r"first(\d+)", subset):
            return self("subset_first", k=m.group(1))
        if m := re.fullmatch(r"random(\d+)_seed(\d+)", subset):
            return self("subset_random", k=m.group(1), seed=m.group(2))
        if m := re.fullmatch(r"study_first(\d+)", subset):
            return self("subset_study_first", k=count(int(m.group(1))))
        if subset == "study_all":
            return self("subset_study_all")
        return self("subset_all")


def work_cell(t: Text, work: Mapping[str, Work]) -> str:
    """What the LVLM did for each stage (lvlm_work.json): prompts and images, and for a model its tokens and
    FLOPs at Qwen2.5-VL-3B's size (a simulated LVLM runs no model: no FLOPs)."""
    parts = []
    for stage, w in work.items():
        sizes = {"stage": stage, "prompts": count(w.prompts), "images": count(w.images)}
        if w.label != "measured":
            parts.append(t("work_sim", **sizes))
            continue
        tokens = t("work_tokens", prefill=count(w.prefill_tokens), decode=count(w.decode_tokens),
                   tflop=num(flops(w, QWEN2_5_VL_3B)["total"] / 1e12))
        parts.append(t("work_desc", encoded=count(w.images_encoded), **sizes) + t("list_sep") + tokens)
    return t("clause_sep").join(parts)


class Doc:
    """Markdown blocks plus the figures (file name -> function drawing it) they link to."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.figures: dict[str, Callable[[], Figure]] = {}

    def add(self, *blocks: str) -> None:
        self.blocks.extend(b for b in blocks if b)

    def figure(self, t: Text, name: str, make: Callable[[], Figure], caption: str) -> None:
        self.figures[name] = make
        self.add(t("fig", alt=name.removesuffix(".png"), path=f"figures/{name}", caption=caption))

    def text(self) -> str:
        return "\n\n".join(self.blocks).rstrip() + "\n"
