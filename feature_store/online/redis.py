"""The shared, networked backend: several serving processes and machines read one store.

Named after the client library it wraps: imports are absolute, so ``import redis`` below is that
library, never this module.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import polars as pl
import redis

from feature_store.online.base import OnlineStore, ReadPlan, ViewSchema, prepare

_REDIS_CHUNK = 1000  # upserts per pipeline round trip

# Replace the hash only if its stored timestamp is not newer. ARGV: timestamp field, timestamp,
# number of field/value pairs to set, the pairs, then the fields to delete (null values).
_UPSERT_LUA = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and tonumber(current) > tonumber(ARGV[2]) then
  return 0
end
local n = tonumber(ARGV[3])
local values = {ARGV[1], ARGV[2]}
for i = 4, 3 + 2 * n do
  values[#values + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(values))
if #ARGV > 3 + 2 * n then
  redis.call('HDEL', KEYS[1], unpack(ARGV, 4 + 2 * n))
end
return 1
"""


# HMGET the same fields from every key and answer with the rows as one JSON document, so the
# client parses one reply with json.loads instead of one reply and one value at a time; that
# parsing dominated batch reads with pipelined HMGETs. ARGV[1] holds one kind per field: "s" for
# text (JSON-quoted), "n" for numbers, sent as stored (repr, integer microseconds or days,
# 1/0 for booleans) with infinities spelled 1e999. Missing fields become null. All keys of one
# call must live on one server (no Redis Cluster).
_GATHER_LUA = """
local kinds = ARGV[1]
local fields = {unpack(ARGV, 2)}
local rows = {}
for i, key in ipairs(KEYS) do
  local values = redis.call('HMGET', key, unpack(fields))
  for j = 1, #fields do
    local v = values[j]
    if not v then
      values[j] = 'null'
    elseif string.byte(kinds, j) == 115 then
      values[j] = cjson.encode(v)
    elseif v == 'inf' then
      values[j] = '1e999'
    elseif v == '-inf' then
      values[j] = '-1e999'
    end
  end
  rows[i] = '[' .. table.concat(values, ',') .. ']'
end
return '[' .. table.concat(rows, ',') .. ']'
"""


def _to_text(series: pl.Series) -> list[str | None]:
    """Redis field values: floats by repr (exact round trip), booleans as "1"/"0", datetimes
    and dates as their integer microseconds / days, everything else by its string form."""
    if series.dtype in (pl.Float32, pl.Float64):
        return [None if v is None else repr(v) for v in series.to_list()]
    if series.dtype == pl.Boolean:
        series = series.cast(pl.Int8)
    return series.to_physical().cast(pl.String).to_list()


class RedisOnlineStore(OnlineStore):
    """One hash per entity, ``{prefix}:{view}:{id}``, one text field per feature plus the
    timestamp; a missing field is null. The view's schema is the hash ``{prefix}:{view}``:
    feature -> dtype, with ``@entity_key`` and ``@timestamp`` naming those columns."""

    def __init__(self, url: str, prefix: str = "fs") -> None:
        super().__init__()
        self._client = redis.Redis.from_url(url, decode_responses=True)
        self._prefix = prefix
        self._upsert = self._client.register_script(_UPSERT_LUA)
        self._gather = self._client.register_script(_GATHER_LUA)

    def close(self) -> None:
        self._client.close()

    def _load_schema(self, view: str) -> ViewSchema | None:
        fields = self._client.hgetall(f"{self._prefix}:{view}")
        if not fields:
            return None
        return ViewSchema(fields.pop("@entity_key"), fields.pop("@timestamp"), fields)

    def _extend(self, view: str, incoming: ViewSchema) -> None:
        """Record new columns with HSETNX, then re-check: a concurrent writer may have won."""
        stored = self._load_schema(view)
        new = incoming.features if stored is None else stored.new_features(view, incoming)
        record = {"@entity_key": incoming.entity_key, "@timestamp": incoming.timestamp, **new}
        with self._client.pipeline(transaction=False) as pipe:
            for name, value in record.items():
                pipe.hsetnx(f"{self._prefix}:{view}", name, value)
            pipe.execute()
        recorded = self._load_schema(view)
        if recorded is None:
            raise RuntimeError(f"the schema of view {view!r} was deleted during the write")
        recorded.new_features(view, incoming)

    def write(self, view: str, frame: pl.DataFrame, *, entity_key: str, timestamp: str) -> int:
        incoming, latest = prepare(view, frame, entity_key, timestamp)
        self._extend(view, incoming)
        self._schemas.pop(view, None)
        names = list(incoming.features)
        columns = [latest[entity_key].to_list(), _to_text(latest[timestamp])]
        columns += [_to_text(latest[name]) for name in names]
        written = 0
        with self._client.pipeline(transaction=False) as pipe:
            for n, (entity_id, ts, *values) in enumerate(zip(*columns, strict=True), start=1):
                pairs: list[str] = []
                nulls: list[str] = []
                for name, value in zip(names, values, strict=True):
                    if value is None:
                        nulls.append(name)
                    else:
                        pairs += (name, value)
                self._upsert(
                    keys=[f"{self._prefix}:{view}:{entity_id}"],
                    args=[timestamp, ts, len(pairs) // 2, *pairs, *nulls],
                    client=pipe,
                )
                if n % _REDIS_CHUNK == 0:
                    written += sum(pipe.execute())
            written += sum(pipe.execute())
        return written

    def _target(self, view: str, entity_key: str, fields: Sequence[str]) -> str:
        return f"{self._prefix}:{view}:"

    def _fetch_many(
        self, reads: Sequence[tuple[ReadPlan, Sequence[str]]]
    ) -> list[list[tuple[Any, ...]]]:
        """All reads in one pipeline: a request's views cost one round trip, not one each."""
        if sum(len(entity_ids) for _, entity_ids in reads) > _REDIS_CHUNK:
            return super()._fetch_many(reads)
        try:
            replies = self._gather_pipelined(reads)
        except redis.exceptions.NoScriptError:  # a new or flushed server: load it, once
            self._client.script_load(_GATHER_LUA)
            replies = self._gather_pipelined(reads)
        return [
            [(i, *values) for i, values in zip(entity_ids, json.loads(reply), strict=True)]
            for (_, entity_ids), reply in zip(reads, replies, strict=True)
        ]

    def _gather_pipelined(self, reads: Sequence[tuple[ReadPlan, Sequence[str]]]) -> list[str]:
        """EVALSHA straight into the pipeline: through ``Script`` a pipeline asks the server
        whether the script exists first, a second round trip each time."""
        with self._client.pipeline(transaction=False) as pipe:
            for plan, entity_ids in reads:
                keys = [plan.target + i for i in entity_ids]
                pipe.evalsha(self._gather.sha, len(keys), *keys, plan.kinds, *plan.fields)
            return pipe.execute()

    def _fetch(self, plan: ReadPlan, entity_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(entity_ids), _REDIS_CHUNK):
            chunk = entity_ids[start : start + _REDIS_CHUNK]
            keys = [plan.target + i for i in chunk]
            replies = json.loads(self._gather(keys=keys, args=[plan.kinds, *plan.fields]))
            rows += [(i, *values) for i, values in zip(chunk, replies, strict=True)]
        return rows
