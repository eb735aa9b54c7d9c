"""The Lua scripts behind the Redis store: each mutating store method is one script, so it runs
atomically on the Redis server whichever replica calls it (no other command interleaves).

Scripts get the key prefix and ids in ARGV and build key names themselves (standalone Redis or a
primary with replicas, not Redis Cluster). Errors come back as a table whose first item names
them (`session`, `variable`, `conflict`, ...); `ok` first means success. Everything a script
stores or compares is a string built by Python, so no number passes through Lua's floats.

Key layout, for prefix P and session S:

- `P:sessions` zset (create_time, id), `P:expiry` zset (expire_time, id), `P:active_jobs` set;
- `P:s:S` hash: the session's fields plus `epoch` (random per incarnation), `seq` (events) and
  `gen` (bumped by every change of its modules or LM: with `epoch` and `seq` it stamps what an
  execution reads, so a replica's cached execution view is checked in one cheap step);
- `P:s:S:names` hash name -> variable id; `P:s:S:v:ID` hash: meta, value, version, ut, src;
- `P:s:S:h:ID` list of history entries (JSON arrays of strings), oldest first;
- `P:s:S:mods` hash module id -> current version; `P:s:S:m:MID` list of version documents;
- `P:s:S:jobs` hash job id -> job document; `P:lease:S:JID` the replica holding the job;
- `P:s:S:events` stream of changes, one entry per committed change (`seq` numbered).
"""

from __future__ import annotations

# Helpers prepended to every script.
_COMMON = r"""
local P = ARGV[1]
local function skey(sid) return P .. ':s:' .. sid end
local function emit(sid, maxlen, fields)
  local seq = redis.call('HINCRBY', skey(sid), 'seq', 1)
  local epoch = redis.call('HGET', skey(sid), 'epoch')
  local args = {'XADD', skey(sid) .. ':events', 'MAXLEN', '~', maxlen, '*',
                'e', epoch, 'q', tostring(seq)}
  for i = 1, #fields do args[#args + 1] = fields[i] end
  return redis.call(unpack(args))
end
local function var_event(sid, maxlen, kind, vkey, reason)
  local f = redis.call('HMGET', vkey, 'meta', 'value', 'version', 'ut', 'src')
  return emit(sid, maxlen, {'k', kind, 'meta', f[1], 'value', f[2], 'version', f[3],
                            'ut', f[4], 'src', f[5], 'r', reason})
end
-- A module or the LM of session hash `s` changed: execution views cached on replicas are stale.
local function views_stale(s) redis.call('HINCRBY', s, 'gen', 1) end
"""

# ARGV: P, sid, max_sessions, create_time, expire_time ('' never), then field pairs.
CREATE_SESSION = (
    _COMMON
    + r"""
local sid = ARGV[2]
if redis.call('EXISTS', skey(sid)) == 1 then return {'exists'} end
local max = tonumber(ARGV[3])
if max > 0 and redis.call('ZCARD', P .. ':sessions') >= max then return {'limit'} end
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', skey(sid), unpack(fields))
redis.call('ZADD', P .. ':sessions', ARGV[4], sid)
if ARGV[5] ~= '' then redis.call('ZADD', P .. ':expiry', ARGV[5], sid) end
redis.call('PERSIST', skey(sid) .. ':events')
return {'ok'}
"""
)

# ARGV: P, sid. Returns ok + the session's fields + variable and module counts.
GET_SESSION = (
    _COMMON
    + r"""
local sid = ARGV[2]
local s = skey(sid)
local f = redis.call('HGETALL', s)
if #f == 0 then return {'session'} end
return {'ok', f, redis.call('HLEN', s .. ':names'), redis.call('HLEN', s .. ':mods')}
"""
)

# ARGV: P, offset, limit (0 all), visible_to ('' + flag), flag '1' when filtering.
LIST_SESSIONS = (
    _COMMON
    + r"""
local offset, limit, owner, filter = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
local out, seen = {}, 0
for _, sid in ipairs(redis.call('ZRANGE', P .. ':sessions', 0, -1)) do
  local keep = true
  if filter == '1' then
    local o = redis.call('HGET', skey(sid), 'owner') or ''
    keep = (o == '' or o == owner)
  end
  if keep then
    if seen >= offset and (limit == 0 or #out < limit) then
      out[#out + 1] = {redis.call('HGETALL', skey(sid)), redis.call('HLEN', skey(sid) .. ':names'),
                       redis.call('HLEN', skey(sid) .. ':mods')}
    end
    seen = seen + 1
  end
end
return out
"""
)

# ARGV: P, sid, reason ('deleted'/'expired'), maxlen, event_ttl_seconds.
DELETE_SESSION = (
    _COMMON
    + r"""
local sid = ARGV[2]
local s = skey(sid)
if redis.call('EXISTS', s) == 0 then return {'session'} end
for _, id in ipairs(redis.call('HVALS', s .. ':names')) do
  redis.call('DEL', s .. ':v:' .. id, s .. ':h:' .. id)
end
for _, mid in ipairs(redis.call('HKEYS', s .. ':mods')) do redis.call('DEL', s .. ':m:' .. mid) end
for _, jid in ipairs(redis.call('HKEYS', s .. ':jobs')) do
  redis.call('SREM', P .. ':active_jobs', sid .. '\n' .. jid)
  redis.call('DEL', P .. ':lease:' .. sid .. ':' .. jid)
end
emit(sid, ARGV[4], {'k', 'ended', 'r', ARGV[3]})
redis.call('DEL', s, s .. ':names', s .. ':mods', s .. ':jobs')
redis.call('ZREM', P .. ':sessions', sid)
redis.call('ZREM', P .. ':expiry', sid)
redis.call('EXPIRE', s .. ':events', ARGV[5])
return {'ok'}
"""
)

# ARGV: P, sid, field, value ('' clears), expiry score ('' none; only for expire_time).
SET_SESSION_FIELD = (
    _COMMON
    + r"""
local sid = ARGV[2]
if redis.call('EXISTS', skey(sid)) == 0 then return {'session'} end
redis.call('HSET', skey(sid), ARGV[3], ARGV[4])
if ARGV[3] ~= 'expire_time' then views_stale(skey(sid)) end
if ARGV[3] == 'expire_time' then
  if ARGV[4] == '' then redis.call('ZREM', P .. ':expiry', sid)
  else redis.call('ZADD', P .. ':expiry', ARGV[4], sid) end
end
return {'ok'}
"""
)

# ARGV: P, sid, id, name, max_variables, maxlen, history entry, then var hash field pairs.
CREATE_VARIABLE = (
    _COMMON
    + r"""
local sid, id, name = ARGV[2], ARGV[3], ARGV[4]
local s = skey(sid)
if redis.call('EXISTS', s) == 0 then return {'session'} end
if redis.call('HEXISTS', s .. ':names', name) == 1 then return {'exists', name} end
if redis.call('EXISTS', s .. ':v:' .. id) == 1 then return {'exists', id} end
local max = tonumber(ARGV[5])
if max > 0 and redis.call('HLEN', s .. ':names') >= max then return {'limit'} end
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', s .. ':v:' .. id, unpack(fields))
redis.call('HSET', s .. ':names', name, id)
redis.call('DEL', s .. ':h:' .. id)
redis.call('RPUSH', s .. ':h:' .. id, ARGV[7])
var_event(sid, ARGV[6], 'registered', s .. ':v:' .. id, '')
return {'ok'}
"""
)

# ARGV: P, sid, name_or_id. Returns ok + meta, value, version, ut, src.
GET_VARIABLE = (
    _COMMON
    + r"""
local sid, key = ARGV[2], ARGV[3]
local s = skey(sid)
if redis.call('EXISTS', s) == 0 then return {'session'} end
local id = redis.call('HGET', s .. ':names', key) or key
local f = redis.call('HMGET', s .. ':v:' .. id, 'meta', 'value', 'version', 'ut', 'src')
if not f[1] then return {'variable'} end
return {'ok', f[1], f[2], f[3], f[4], f[5]}
"""
)

# ARGV: P, sid. Returns ok + one {meta, value, version, ut, src} per variable.
LIST_VARIABLES = (
    _COMMON
    + r"""
local s = skey(ARGV[2])
if redis.call('EXISTS', s) == 0 then return {'session'} end
local out = {'ok'}
for _, id in ipairs(redis.call('HVALS', s .. ':names')) do
  out[#out + 1] = redis.call('HMGET', s .. ':v:' .. id, 'meta', 'value', 'version', 'ut', 'src')
end
return out
"""
)

# ARGV: P, sid, id, name, maxlen. Returns ok + the fields as they were.
DELETE_VARIABLE = (
    _COMMON
    + r"""
local sid, id, name = ARGV[2], ARGV[3], ARGV[4]
local s = skey(sid)
if redis.call('EXISTS', s) == 0 then return {'session'} end
local vkey = s .. ':v:' .. id
local f = redis.call('HMGET', vkey, 'meta', 'value', 'version', 'ut', 'src')
if not f[1] then return {'variable'} end
var_event(sid, ARGV[5], 'deleted', vkey, '')
redis.call('DEL', vkey, s .. ':h:' .. id)
redis.call('HDEL', s .. ':names', name)
return {'ok', f[1], f[2], f[3], f[4], f[5]}
"""
)

# ARGV: P, sid, now, history_limit, maxlen, then 5 per write: id, value, source, reason,
# expected version ('' none). All checked before anything is written.
WRITE_VARIABLES = (
    _COMMON
    + r"""
local sid, now, keep, maxlen = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local s = skey(sid)
if redis.call('EXISTS', s) == 0 then return {'session'} end
local pending = {}
for i = 6, #ARGV, 5 do
  local id, expected = ARGV[i], ARGV[i + 4]
  local vkey = s .. ':v:' .. id
  local current = pending[id]
  if not current then
    current = redis.call('HGET', vkey, 'version')
    if not current then return {'variable', id} end
    current = tonumber(current)
  end
  if expected ~= '' and tonumber(expected) ~= current then
    return {'conflict', id, expected, tostring(current)}
  end
  pending[id] = current + 1
end
local out = {'ok'}
for i = 6, #ARGV, 5 do
  local id, value, src, reason = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local vkey = s .. ':v:' .. id
  local version = redis.call('HINCRBY', vkey, 'version', 1)
  redis.call('HSET', vkey, 'value', value, 'ut', now, 'src', src)
  local hkey = s .. ':h:' .. id
  redis.call('RPUSH', hkey, cjson.encode({tostring(version), value, src, reason, now}))
  if keep > 0 then redis.call('LTRIM', hkey, -keep, -1) end
  var_event(sid, maxlen, 'updated', vkey, reason)
  out[#out + 1] = {tostring(version), redis.call('HGET', vkey, 'meta')}
end
return out
"""
)

# ARGV: P, sid, id, limit (0 all). Returns ok + entries newest last.
VARIABLE_HISTORY = (
    _COMMON
    + r"""
local s = skey(ARGV[2])
if redis.call('EXISTS', s) == 0 then return {'session'} end
if redis.call('EXISTS', s .. ':v:' .. ARGV[3]) == 0 then return {'variable'} end
local limit = tonumber(ARGV[4])
local start = 0
if limit > 0 then start = -limit end
return {'ok', redis.call('LRANGE', s .. ':h:' .. ARGV[3], start, -1)}
"""
)

# ARGV: P, sid, module id, document of version 1.
CREATE_MODULE = (
    _COMMON
    + r"""
local s, mid = skey(ARGV[2]), ARGV[3]
if redis.call('EXISTS', s) == 0 then return {'session'} end
if redis.call('HEXISTS', s .. ':mods', mid) == 1 then return {'exists'} end
redis.call('HSET', s .. ':mods', mid, '1')
redis.call('DEL', s .. ':m:' .. mid)
redis.call('RPUSH', s .. ':m:' .. mid, ARGV[4])
views_stale(s)
return {'ok'}
"""
)

# ARGV: P, sid, module id, expected version, document of the next version.
PUT_MODULE_VERSION = (
    _COMMON
    + r"""
local s, mid = skey(ARGV[2]), ARGV[3]
if redis.call('EXISTS', s) == 0 then return {'session'} end
local current = redis.call('HGET', s .. ':mods', mid)
if not current then return {'module'} end
if current ~= ARGV[4] then return {'conflict', current} end
redis.call('HSET', s .. ':mods', mid, tostring(tonumber(current) + 1))
redis.call('RPUSH', s .. ':m:' .. mid, ARGV[5])
views_stale(s)
return {'ok'}
"""
)

# ARGV: P, sid, module id, version (0 current).
GET_MODULE = (
    _COMMON
    + r"""
local s, mid = skey(ARGV[2]), ARGV[3]
if redis.call('EXISTS', s) == 0 then return {'session'} end
local current = redis.call('HGET', s .. ':mods', mid)
if not current then return {'module'} end
current = tonumber(current)
local version = tonumber(ARGV[4])
if version == 0 then version = current end
if version < 1 or version > current then return {'version', tostring(current)} end
return {'ok', redis.call('LINDEX', s .. ':m:' .. mid, version - 1)}
"""
)

# ARGV: P, sid. Returns ok + the current document of each module.
LIST_MODULES = (
    _COMMON
    + r"""
local s = skey(ARGV[2])
if redis.call('EXISTS', s) == 0 then return {'session'} end
local out = {'ok'}
local f = redis.call('HGETALL', s .. ':mods')
for i = 1, #f, 2 do
  out[#out + 1] = redis.call('LINDEX', s .. ':m:' .. f[i], tonumber(f[i + 1]) - 1)
end
return out
"""
)

# ARGV: P, sid, module id.
DELETE_MODULE = (
    _COMMON
    + r"""
local s, mid = skey(ARGV[2]), ARGV[3]
if redis.call('EXISTS', s) == 0 then return {'session'} end
if redis.call('HDEL', s .. ':mods', mid) == 0 then return {'module'} end
redis.call('DEL', s .. ':m:' .. mid)
views_stale(s)
return {'ok'}
"""
)

# ARGV: P, sid, job id, document, active ('1'/'0'), replica id, lease ms.
CREATE_JOB = (
    _COMMON
    + r"""
local sid, jid = ARGV[2], ARGV[3]
local s = skey(sid)
if redis.call('EXISTS', s) == 0 then return {'session'} end
if redis.call('HEXISTS', s .. ':jobs', jid) == 1 then return {'exists'} end
redis.call('HSET', s .. ':jobs', jid, ARGV[4])
if ARGV[5] == '1' then
  redis.call('SADD', P .. ':active_jobs', sid .. '\n' .. jid)
  redis.call('SET', P .. ':lease:' .. sid .. ':' .. jid, ARGV[6], 'PX', ARGV[7])
end
return {'ok'}
"""
)

# ARGV: P, sid, job id. Returns ok + the document.
GET_JOB = (
    _COMMON
    + r"""
local s = skey(ARGV[2])
if redis.call('EXISTS', s) == 0 then return {'session'} end
local doc = redis.call('HGET', s .. ':jobs', ARGV[3])
if not doc then return {'job'} end
return {'ok', doc}
"""
)

# ARGV: P, sid, job id, the document read, the new document, new status active ('1'/'0').
# Compare-and-set: `stale` when the job changed since it was read (the caller retries).
UPDATE_JOB = (
    _COMMON
    + r"""
local sid, jid = ARGV[2], ARGV[3]
local s = skey(sid)
if redis.call('EXISTS', s) == 0 then return {'session'} end
local doc = redis.call('HGET', s .. ':jobs', jid)
if not doc then return {'job'} end
if doc ~= ARGV[4] then return {'stale'} end
redis.call('HSET', s .. ':jobs', jid, ARGV[5])
if ARGV[6] ~= '1' then
  redis.call('SREM', P .. ':active_jobs', sid .. '\n' .. jid)
  redis.call('DEL', P .. ':lease:' .. sid .. ':' .. jid)
end
return {'ok'}
"""
)

# ARGV: P, sid. Returns ok + every job document.
LIST_JOBS = (
    _COMMON
    + r"""
local s = skey(ARGV[2])
if redis.call('EXISTS', s) == 0 then return {'session'} end
return {'ok', redis.call('HVALS', s .. ':jobs')}
"""
)

# ARGV: P, replica id, lease ms, then sid, job id pairs. Renews the leases this replica holds on
# jobs still active; returns 1 per job still held, 0 per job lost (lapsed, taken, finished).
RENEW_LEASES = (
    _COMMON
    + r"""
local me, ms = ARGV[2], ARGV[3]
local out = {}
for i = 4, #ARGV, 2 do
  local member = ARGV[i] .. '\n' .. ARGV[i + 1]
  local lease = P .. ':lease:' .. ARGV[i] .. ':' .. ARGV[i + 1]
  if redis.call('GET', lease) == me and redis.call('SISMEMBER', P .. ':active_jobs', member) == 1
  then
    redis.call('PEXPIRE', lease, ms)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""
)

# ARGV: P. The active jobs whose lease has lapsed: their replica is gone.
ORPHANED_JOBS = (
    _COMMON
    + r"""
local out = {}
for _, member in ipairs(redis.call('SMEMBERS', P .. ':active_jobs')) do
  local nl = string.find(member, '\n', 1, true)
  local sid, jid = string.sub(member, 1, nl - 1), string.sub(member, nl + 1)
  if redis.call('EXISTS', P .. ':lease:' .. sid .. ':' .. jid) == 0 then
    out[#out + 1] = {sid, jid}
  end
end
return out
"""
)

# ARGV: P, replica id, then sid, job id pairs. Drops this replica's leases (it is stopping): the
# jobs are orphaned at once instead of when the leases would have lapsed.
RELEASE_LEASES = (
    _COMMON
    + r"""
for i = 3, #ARGV, 2 do
  local lease = P .. ':lease:' .. ARGV[i] .. ':' .. ARGV[i + 1]
  if redis.call('GET', lease) == ARGV[2] then redis.call('DEL', lease) end
end
return {'ok'}
"""
)

# ARGV: P, sid. Where a new watcher of the session starts: {epoch, seq, last stream entry id}.
WATCH_POSITION = (
    _COMMON
    + r"""
local s = skey(ARGV[2])
local f = redis.call('HMGET', s, 'epoch', 'seq')
if not f[1] then return {'session'} end
local last = redis.call('XREVRANGE', s .. ':events', '+', '-', 'COUNT', 1)
local entry = '0-0'
if #last > 0 then entry = last[1][1] end
return {'ok', f[1], f[2], entry}
"""
)

# ARGV: P, sid, module id, version (0 current), then the stamp of the view the caller holds
# (epoch, seq, gen; '' none). What an execution reads, in one round trip: `same` and the expiry
# when nothing it reads changed since that stamp (the session's modules and LM bump `gen`, its
# variables `seq`, a new incarnation has a new `epoch`); otherwise ok, the session's fields (the
# stamp among them), its counts, the module version's document, then every variable.
EXECUTION_VIEW = (
    _COMMON
    + r"""
local s, mid = skey(ARGV[2]), ARGV[3]
local stamp = redis.call('HMGET', s, 'epoch', 'seq', 'gen', 'expire_time')
if not stamp[1] then return {'session'} end
if stamp[1] == ARGV[5] and stamp[2] == ARGV[6] and (stamp[3] or '0') == ARGV[7] then
  return {'same', stamp[4]}
end
local f = redis.call('HGETALL', s)
local current = redis.call('HGET', s .. ':mods', mid)
if not current then return {'module'} end
current = tonumber(current)
local version = tonumber(ARGV[4])
if version == 0 then version = current end
if version < 1 or version > current then return {'version', tostring(current)} end
local out = {'ok', f, redis.call('HLEN', s .. ':names'), redis.call('HLEN', s .. ':mods'),
             redis.call('LINDEX', s .. ':m:' .. mid, version - 1)}
for _, id in ipairs(redis.call('HVALS', s .. ':names')) do
  out[#out + 1] = redis.call('HMGET', s .. ':v:' .. id, 'meta', 'value', 'version', 'ut', 'src')
end
return out
"""
)
