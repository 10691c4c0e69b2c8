"""Raw click sources -> one clicks table: RecBole atomic `.inter`, Diginetica csv, and a synthetic generator.

Every reader returns a pandas DataFrame with the columns of `CLICK_COLUMNS`:
- `session` int64: session (or user) id; clicks of one session form one sequence,
- `item`    str or int: raw item token (label-encoded later, after filtering),
- `time`    float64 seconds: what the `time` split compares (a session's time is its last click's),
- `order`   float64: the order of clicks inside a session (Diginetica: `timeframe`, not the day-resolution date).

No torch here, so `workbench data ...` commands and tests can use it cheaply. Readers are vectorised (pandas C
parser + column operations); a malformed line raises `DataFileError` naming the file and the 1-based line.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.tasks.recommendation.config import SyntheticSessions

CLICK_COLUMNS = ("session", "item", "time", "order")
ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
DIGINETICA_COLUMNS = ("sessionId", "userId", "itemId", "timeframe", "eventdate")
SECONDS_PER_DAY = 86_400.0


class DataFileError(ValueError):
    """A data file that cannot be read: says which file, which line, what is wrong and what to do."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


# -- RecBole atomic files -----------------------------------------------------------------------------------


def parse_atomic_header(path: Path, header: str) -> dict[str, str]:
    """`session_id:token<TAB>item_id:token<TAB>timestamp:float` -> {"session_id": "token", ...}."""
    fields: dict[str, str] = {}
    for raw in header.rstrip("\r\n").split("\t"):
        name, sep, kind = raw.strip().partition(":")
        if not sep or not name or kind not in ATOMIC_TYPES:
            raise DataFileError(
                path,
                f"header field {raw!r} is not `name:type` with type one of {', '.join(ATOMIC_TYPES)} "
                "(RecBole atomic files start with e.g. `session_id:token<TAB>item_id:token<TAB>timestamp:float`)",
                line=1,
            )
        fields[name] = kind
    return fields


def read_atomic(path: str | Path) -> pd.DataFrame:
    """Read a RecBole `.inter` file. Sessions come from `session_id`, else from `user_id` (one sequence per user).

    Without a `timestamp` column the file order is the click order.
    """
    path = Path(path)
    _require_file(path, "a RecBole .inter file")
    with open(path, encoding="utf-8") as f:
        header = f.readline()
    fields = parse_atomic_header(path, header)
    group = "session_id" if "session_id" in fields else "user_id" if "user_id" in fields else None
    if group is None or "item_id" not in fields:
        raise DataFileError(
            path, f"the header must name item_id and session_id (or user_id); it has {', '.join(fields)}", line=1
        )
    usecols = [group, "item_id"] + (["timestamp"] if "timestamp" in fields else [])
    table = _read_table(path, sep="\t", names=list(fields), usecols=usecols)
    _require_values(path, table, usecols)
    session = pd.factorize(table[group])[0].astype(np.int64)
    if "timestamp" in table:
        time = _numeric(path, table, "timestamp")
    else:
        time = np.arange(len(table), dtype=np.float64)
    return pd.DataFrame({"session": session, "item": table["item_id"].to_numpy(), "time": time, "order": time})


def write_atomic(clicks: pd.DataFrame, path: str | Path) -> None:
    """Write clicks as a RecBole `.inter` file (session_id, item_id, timestamp), sorted by session and order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = clicks.sort_values(["session", "order"], kind="stable")
    out = pd.DataFrame(
        {"session_id:token": ordered["session"], "item_id:token": ordered["item"], "timestamp:float": ordered["time"]}
    )
    tmp = path.with_name(path.name + ".tmp")
    out.to_csv(tmp, sep="\t", index=False, float_format="%.3f")
    tmp.replace(path)


# -- Diginetica (CIKM Cup 2016) -----------------------------------------------------------------------------


def read_diginetica(path: str | Path) -> pd.DataFrame:
    """Read `train-item-views.csv` (`sessionId;userId;itemId;timeframe;eventdate`).

    Clicks are ordered inside a session by `timeframe` (milliseconds since the session began). NARM's and STAMP's
    scripts sorted by `eventdate`, which has day resolution and scrambles the click order (SR-GNN#11, #31).
    A click's `time` is its date plus its timeframe, so day-based splits see whole days.
    """
    path = Path(path)
    _require_file(path, "Diginetica's train-item-views.csv")
    with open(path, encoding="utf-8") as f:
        header = [c.strip() for c in f.readline().rstrip("\r\n").split(";")]
    missing = [c for c in DIGINETICA_COLUMNS if c not in header]
    if missing:
        raise DataFileError(
            path,
            f"header lacks {', '.join(missing)}; expected `{';'.join(DIGINETICA_COLUMNS)}` (';'-separated)",
            line=1,
        )
    required = ["sessionId", "itemId", "timeframe", "eventdate"]
    table = _read_table(path, sep=";", names=header, usecols=required)
    _require_values(path, table, required)
    session = _numeric(path, table, "sessionId").astype(np.int64)
    timeframe = _numeric(path, table, "timeframe")
    dates = pd.to_datetime(table["eventdate"], format="%Y-%m-%d", errors="coerce")
    _fail_on_first(path, table.index[dates.isna().to_numpy()], "eventdate is not a date like 2016-05-09")
    day_seconds = (dates - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy()
    return pd.DataFrame(
        {
            "session": session,
            "item": table["itemId"].to_numpy(),
            "time": day_seconds + timeframe / 1000.0,
            "order": timeframe,
        }
    )


# -- synthetic sessions -------------------------------------------------------------------------------------


def generate_sessions(spec: SyntheticSessions) -> pd.DataFrame:
    """Generate click sessions with structure a sequence model can learn and a popularity model cannot.

    Two shapes (`spec.kind`), sharing the session lengths (`length_distribution`, `mean_length`, `max_length`),
    Markov successors and re-clicks:
    - `topics`: item k has a global weight rank(k)^-zipf_exponent (ranks shuffled, so ids carry no signal);
      items are split into n_topics groups and each session draws one topic. A non-successor click is a
      popularity draw from the session's topic (4 times in 5) or from the whole catalogue.
    - `intents`: each latent intent ranks its own items by a Zipf law (rank inside the intent, so an item's
      popularity depends only on its intent); a session starts in a random intent and moves to another one with
      intent_switch_prob per click. A non-successor click is a Zipf draw inside the current intent.
    In both, each item has n_successors likely next items (same topic/intent, popularity-weighted, with decaying
    weights 1, 1/2, 1/3, ...) that the next click follows with follow_prob; with reclick_prob (checked first) the
    next click repeats an earlier click of the session, chosen uniformly.
    Vectorised over sessions: the Python loop runs over click positions (at most max_length times).
    """
    rng = np.random.default_rng(spec.seed)
    n, m = spec.n_sessions, spec.n_items
    intents = spec.kind == "intents"
    if intents:
        topic = rng.permutation(np.arange(m) % spec.n_topics)  # balanced intents, every intent gets an item
        rank = np.empty(m, dtype=np.float64)
        for members in _groups(topic, spec.n_topics):  # Zipf rank inside each intent
            rank[members] = rng.permutation(len(members)) + 1.0
        popularity = rank**-spec.zipf_exponent
    else:
        popularity = rng.permutation(np.arange(1, m + 1, dtype=np.float64) ** -spec.zipf_exponent)
        topic = rng.integers(0, spec.n_topics, size=m)
        topic[rng.permutation(m)[: spec.n_topics]] = np.arange(spec.n_topics)  # every topic gets an item

    # Draws restricted to a topic, vectorised: sort items by topic, then one searchsorted over "topic + cdf".
    by_topic = np.argsort(topic, kind="stable")
    topic_sorted = topic[by_topic]
    weights = popularity[by_topic]
    totals = np.bincount(topic_sorted, weights=weights, minlength=spec.n_topics)
    within = np.cumsum(weights) - (np.cumsum(totals) - totals)[topic_sorted]  # running sum inside each topic
    keys = topic_sorted + within / totals[topic_sorted]  # in (t, t+1] for topic t, increasing
    global_cdf = np.cumsum(popularity) / popularity.sum()

    def draw_in_topic(t: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(keys, t + rng.random(len(t)), side="right")
        return by_topic[np.minimum(idx, m - 1)]

    def draw_global(k: int) -> np.ndarray:
        return np.minimum(np.searchsorted(global_cdf, rng.random(k), side="right"), m - 1)

    successors = np.stack([draw_in_topic(topic) for _ in range(spec.n_successors)], axis=1)  # [m, S]
    succ_cdf = np.cumsum(1.0 / np.arange(1, spec.n_successors + 1))
    succ_cdf /= succ_cdf[-1]

    lengths = _session_lengths(rng, spec)
    session_topic = rng.integers(0, spec.n_topics, size=n)
    clicks = np.zeros((n, int(lengths.max())), dtype=np.int64)
    clicks[:, 0] = draw_in_topic(session_topic)
    for pos in range(1, clicks.shape[1]):
        prev = clicks[:, pos - 1]
        if intents and spec.intent_switch_prob > 0:
            switch = rng.random(n) < spec.intent_switch_prob
            session_topic[switch] = rng.integers(0, spec.n_topics, size=int(switch.sum()))
        follow = rng.random(n) < spec.follow_prob
        slot = np.minimum(np.searchsorted(succ_cdf, rng.random(n), side="right"), spec.n_successors - 1)
        nxt = draw_in_topic(session_topic)
        if not intents:
            jump = rng.random(n) < 0.2
            nxt[jump] = draw_global(int(jump.sum()))
        step = np.where(follow, successors[prev, slot], nxt)
        if spec.reclick_prob > 0:  # gated, so sets without re-clicks keep their exact random stream
            again = rng.random(n) < spec.reclick_prob
            earlier = clicks[np.arange(n), rng.integers(0, pos, size=n)]
            step = np.where(again, earlier, step)
        clicks[:, pos] = step

    start = np.sort(rng.random(n)) * spec.days * SECONDS_PER_DAY  # session i starts before session i+1
    gaps = rng.uniform(20.0, 120.0, size=clicks.shape).cumsum(axis=1)
    keep = np.arange(clicks.shape[1])[None, :] < lengths[:, None]
    session = np.broadcast_to(np.arange(n)[:, None], clicks.shape)[keep]
    time = (start[:, None] + gaps)[keep]
    # item tokens 1..m as in a RecBole file (0 stays free for padding after encoding)
    return pd.DataFrame({"session": session.astype(np.int64), "item": clicks[keep] + 1, "time": time, "order": time})


def _session_lengths(rng: np.random.Generator, spec: SyntheticSessions) -> np.ndarray:
    """[n_sessions] lengths: 2 + extra clicks with mean mean_length - 2 (before the cut at max_length)."""
    n, extra_mean = spec.n_sessions, spec.mean_length - 2.0
    if extra_mean <= 0:
        extra = np.zeros(n, dtype=np.int64)
    elif spec.length_distribution == "geometric":
        extra = rng.geometric(1.0 / (extra_mean + 1.0), size=n) - 1
    elif spec.length_distribution == "lognormal":  # heavy tail: many short sessions and a few very long ones
        sigma = 1.0
        extra = np.floor(rng.lognormal(np.log(extra_mean + 0.5) - sigma**2 / 2, sigma, size=n)).astype(np.int64)
    else:
        extra = rng.integers(0, int(round(2 * extra_mean)) + 1, size=n)
    return np.minimum(2 + extra, spec.max_length)


def _groups(labels: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """Indices of each label 0..n_groups-1."""
    order = np.argsort(labels, kind="stable")
    return np.split(order, np.cumsum(np.bincount(labels, minlength=n_groups))[:-1])


# -- helpers ------------------------------------------------------------------------------------------------


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise DataFileError(path, f"file not found; data.path must point at {what}")


def _read_table(path: Path, *, sep: str, names: list[str], usecols: list[str]) -> pd.DataFrame:
    """Read all rows as strings. Index i is file line i + 2 (blank lines are kept as empty rows, then dropped)."""
    try:
        # No `names`/`usecols`: with either, pandas silently absorbs a line with too many fields; without them
        # it raises with the line number.
        table = pd.read_csv(
            path,
            sep=sep,
            header=0,
            dtype=str,
            quoting=csv.QUOTE_NONE,
            keep_default_na=False,
            skip_blank_lines=False,
            engine="c",
        )
    except pd.errors.ParserError as exc:  # "Expected 3 fields in line 7, saw 4": the line is the file's line
        line = _line_from_parser_error(str(exc))
        message = f"wrong number of fields ({_short(exc)}); fields are separated by {sep!r}"
        raise DataFileError(path, message, line) from None
    except UnicodeDecodeError as exc:
        raise DataFileError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    table.columns = names
    table = table[usecols]
    table.index = np.arange(len(table))
    blank = (table[usecols] == "").all(axis=1).to_numpy()
    return table[~blank]


def _require_values(path: Path, table: pd.DataFrame, columns: list[str]) -> None:
    for column in columns:
        empty = table.index[(table[column].str.strip() == "").to_numpy()]
        _fail_on_first(path, empty, f"missing value in column {column!r}")


def _numeric(path: Path, table: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(table[column], errors="coerce")
    bad = table.index[values.isna().to_numpy()]
    _fail_on_first(path, bad, f"{column} must be a number")
    return values.to_numpy(dtype=np.float64)


def _fail_on_first(path: Path, bad_index: pd.Index, message: str) -> None:
    if len(bad_index):
        first = int(bad_index[0])
        more = f" ({len(bad_index) - 1} more lines like it)" if len(bad_index) > 1 else ""
        raise DataFileError(path, f"{message}{more}; fix or remove the line", line=first + 2)


def _line_from_parser_error(text: str) -> int | None:
    import re

    match = re.search(r"line (\d+)", text)
    return int(match.group(1)) if match else None


def _short(exc: Exception) -> str:
    return str(exc).strip().splitlines()[-1].replace("Error tokenizing data. C error: ", "")
