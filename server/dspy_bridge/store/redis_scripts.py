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

The per-session byte budget and the per-caller shares (`sizes`, `quotas`) live next to the data
and are checked and counted by the same script as the write they admit:

- `P:s:S` field `bytes`: what the session keeps (absent: not counted yet — a session stored
  before the count existed; an admitting script then answers `uncounted`, the store counts the
  session from its contents with `INIT_BUDGET` and runs the script again);
- `P:s:S:v:ID` field `rb` (the record's bytes) and `P:s:S:hb:ID` list of the kept history
  entries' bytes, oldest first, trimmed with the history; `P:s:S:mb` hash module id -> bytes of
  all its versions;
- `P:owned:O` zset (expire_time or +inf, id): the sessions caller O owns (`P:owned_index` marks
  that the index was built from the sessions stored before it existed);
- `P:ojobs:O` set of `S` newline `JID`: caller O's active jobs (`P:active_owner` maps each to
  its caller); one counts while it is in `P:active_jobs` with a live lease, so a dead
  replica's jobs stop counting when their lease lapses.
"""

from __future__ import annotations

# Helpers prepended to every script.
_COMMON = r"""
local P = ARGV[1]
local function skey(sid) return P .. ':s:' .. sid end
local function has_session(s) return redis.call('EXISTS', s) == 1 end
local function var_fields(vkey)
  return redis.call('HMGET', vkey, 'meta', 'value', 'version', 'ut', 'src')
end
-- Appends the fields of every variable of session hash `s` to `out`.
local function append_variables(s, out)
  for _, id in ipairs(redis.call('HVALS', s .. ':names')) do
    out[#out + 1] = var_fields(s .. ':v:' .. id)
  end
  return out
end
local function lease_key(sid, jid) return P .. ':lease:' .. sid .. ':' .. jid end
local function job_member(member)
  local nl = string.find(member, '\n', 1, true)
  return string.sub(member, 1, nl - 1), string.sub(member, nl + 1)
end
-- A job left QUEUED/RUNNING: no longer active, leased or counted for its caller.
local function deactivate(sid, jid)
  local member = sid .. '\n' .. jid
  redis.call('SREM', P .. ':active_jobs', member)
  redis.call('DEL', lease_key(sid, jid))
  local owner = redis.call('HGET', P .. ':active_owner', member)
  if owner then
    redis.call('SREM', P .. ':ojobs:' .. owner, member)
    redis.call('HDEL', P .. ':active_owner', member)
  end
end
-- The refusal of a write needing `needed` more bytes in session hash `s` (nil: admitted).
local function over_budget(s, max, needed)
  local used = redis.call('HGET', s, 'bytes')
  if not used then return {'uncounted'} end
  used = tonumber(used)
  max, needed = tonumber(max), tonumber(needed)
  if max > 0 and needed > 0 and used + needed > max then
    return {'budget', tostring(used), tostring(needed)}
  end
  return nil
end
local function add_bytes(s, n)
  if n ~= 0 and redis.call('HEXISTS', s, 'bytes') == 1 then redis.call('HINCRBY', s, 'bytes', n) end
end
-- What variable `id` keeps: its record and every kept history entry.
local function var_bytes(s, id)
  local total = tonumber(redis.call('HGET', s .. ':v:' .. id, 'rb') or '0')
  for _, n in ipairs(redis.call('LRANGE', s .. ':hb:' .. id, 0, -1)) do
    total = total + tonumber(n)
  end
  return total
end
-- The document of module `mid` at version `v` (0: current), or nil and the error reply.
local function module_doc(s, mid, v)
  local current = redis.call('HGET', s .. ':mods', mid)
  if not current then return nil, {'module'} end
  current = tonumber(current)
  local version = tonumber(v)
  if version == 0 then version = current end
  if version < 1 or version > current then return nil, {'version', tostring(current)} end
  return redis.call('LINDEX', s .. ':m:' .. mid, version - 1)
end
local function emit(sid, maxlen, fields)
  local seq = redis.call('HINCRBY', skey(sid), 'seq', 1)
  local epoch = redis.call('HGET', skey(sid), 'epoch')
  local args = {'XADD', skey(sid) .. ':events', 'MAXLEN', '~', maxlen, '*',
                'e', epoch, 'q', tostring(seq)}
  for i = 1, #fields do args[#args + 1] = fields[i] end
  return redis.call(unpack(args))
end
local function var_event(sid, maxlen, kind, vkey, reason)
  local f = var_fields(vkey)
  return emit(sid, maxlen, {'k', kind, 'meta', f[1], 'value', f[2], 'version', f[3],
                            'ut', f[4], 'src', f[5], 'r', reason})
end
-- A module or the LM of session hash `s` changed: execution views cached on replicas are stale.
local function views_stale(s) redis.call('HINCRBY', s, 'gen', 1) end
"""


def _script(body: str) -> str:
    """A script: the common helpers, then `body`."""
    return _COMMON + body


# ARGV: P, sid, max_sessions, create_time, expire_time ('' never), session bytes, owner,
# max_per_owner, then field pairs. The caller's live sessions are counted in the same step.
CREATE_SESSION = _script(
    r"""
local sid, owner, per_owner = ARGV[2], ARGV[7], tonumber(ARGV[8])
if has_session(skey(sid)) then return {'exists'} end
local max = tonumber(ARGV[3])
if max > 0 and redis.call('ZCARD', P .. ':sessions') >= max then return {'limit'} end
local owned_key = P .. ':owned:' .. owner
if owner ~= '' and per_owner > 0 then
  if redis.call('EXISTS', P .. ':owned_index') == 0 then  -- sessions stored before the index
    for _, id in ipairs(redis.call('ZRANGE', P .. ':sessions', 0, -1)) do
      local f = redis.call('HMGET', skey(id), 'owner', 'expire_time')
      if f[1] and f[1] ~= '' then
        redis.call('ZADD', P .. ':owned:' .. f[1], (f[2] ~= '' and f[2]) or '+inf', id)
      end
    end
    redis.call('SET', P .. ':owned_index', '1')
  end
  local owned = redis.call('ZCOUNT', owned_key, '(' .. ARGV[4], '+inf')
  if owned >= per_owner then return {'quota', tostring(owned)} end
end
local fields = {}
for i = 9, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', skey(sid), 'bytes', ARGV[6], unpack(fields))
redis.call('ZADD', P .. ':sessions', ARGV[4], sid)
if ARGV[5] ~= '' then redis.call('ZADD', P .. ':expiry', ARGV[5], sid) end
if owner ~= '' then redis.call('ZADD', owned_key, (ARGV[5] ~= '' and ARGV[5]) or '+inf', sid) end
redis.call('PERSIST', skey(sid) .. ':events')
return {'ok'}
"""
)

# ARGV: P, sid. Returns ok + the session's fields + variable and module counts.
GET_SESSION = _script(
    r"""
local s = skey(ARGV[2])
local f = redis.call('HGETALL', s)
if #f == 0 then return {'session'} end
return {'ok', f, redis.call('HLEN', s .. ':names'), redis.call('HLEN', s .. ':mods')}
"""
)

# ARGV: P, offset, limit (0 all), visible_to ('' + flag), flag '1' when filtering.
LIST_SESSIONS = _script(
    r"""
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
DELETE_SESSION = _script(
    r"""
local sid = ARGV[2]
local s = skey(sid)
if not has_session(s) then return {'session'} end
for _, id in ipairs(redis.call('HVALS', s .. ':names')) do
  redis.call('DEL', s .. ':v:' .. id, s .. ':h:' .. id, s .. ':hb:' .. id)
end
for _, mid in ipairs(redis.call('HKEYS', s .. ':mods')) do redis.call('DEL', s .. ':m:' .. mid) end
for _, jid in ipairs(redis.call('HKEYS', s .. ':jobs')) do deactivate(sid, jid) end
local owner = redis.call('HGET', s, 'owner') or ''
if owner ~= '' then redis.call('ZREM', P .. ':owned:' .. owner, sid) end
emit(sid, ARGV[4], {'k', 'ended', 'r', ARGV[3]})
redis.call('DEL', s, s .. ':names', s .. ':mods', s .. ':mb', s .. ':jobs')
redis.call('ZREM', P .. ':sessions', sid)
redis.call('ZREM', P .. ':expiry', sid)
redis.call('EXPIRE', s .. ':events', ARGV[5])
return {'ok'}
"""
)

# ARGV: P, sid, field, value ('' clears). Setting expire_time also moves the session in the
# expiry index and in its owner's live-sessions index.
SET_SESSION_FIELD = _script(
    r"""
local sid = ARGV[2]
local s = skey(sid)
if not has_session(s) then return {'session'} end
redis.call('HSET', s, ARGV[3], ARGV[4])
if ARGV[3] ~= 'expire_time' then views_stale(s) end
if ARGV[3] == 'expire_time' then
  if ARGV[4] == '' then redis.call('ZREM', P .. ':expiry', sid)
  else redis.call('ZADD', P .. ':expiry', ARGV[4], sid) end
  local owner = redis.call('HGET', s, 'owner') or ''
  if owner ~= '' then
    redis.call('ZADD', P .. ':owned:' .. owner, 'XX', (ARGV[4] ~= '' and ARGV[4]) or '+inf', sid)
  end
end
return {'ok'}
"""
)

# ARGV: P, sid, id, name, max_variables, maxlen, history entry, max bytes, record bytes, entry
# bytes, then var hash field pairs.
CREATE_VARIABLE = _script(
    r"""
local sid, id, name = ARGV[2], ARGV[3], ARGV[4]
local s = skey(sid)
if not has_session(s) then return {'session'} end
if redis.call('HEXISTS', s .. ':names', name) == 1 then return {'exists', name} end
if redis.call('EXISTS', s .. ':v:' .. id) == 1 then return {'exists', id} end
local max = tonumber(ARGV[5])
if max > 0 and redis.call('HLEN', s .. ':names') >= max then return {'limit'} end
local refused = over_budget(s, ARGV[8], tonumber(ARGV[9]) + tonumber(ARGV[10]))
if refused then return refused end
local fields = {}
for i = 11, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', s .. ':v:' .. id, 'rb', ARGV[9], unpack(fields))
redis.call('HSET', s .. ':names', name, id)
redis.call('DEL', s .. ':h:' .. id, s .. ':hb:' .. id)
redis.call('RPUSH', s .. ':h:' .. id, ARGV[7])
redis.call('RPUSH', s .. ':hb:' .. id, ARGV[10])
add_bytes(s, tonumber(ARGV[9]) + tonumber(ARGV[10]))
var_event(sid, ARGV[6], 'registered', s .. ':v:' .. id, '')
return {'ok'}
"""
)

# ARGV: P, sid, name_or_id. Returns ok + meta, value, version, ut, src.
GET_VARIABLE = _script(
    r"""
local sid, key = ARGV[2], ARGV[3]
local s = skey(sid)
if not has_session(s) then return {'session'} end
local id = redis.call('HGET', s .. ':names', key) or key
local f = var_fields(s .. ':v:' .. id)
if not f[1] then return {'variable'} end
return {'ok', f[1], f[2], f[3], f[4], f[5]}
"""
)

# ARGV: P, sid. Returns ok + one {meta, value, version, ut, src} per variable.
LIST_VARIABLES = _script(
    r"""
local s = skey(ARGV[2])
if not has_session(s) then return {'session'} end
local out = {'ok'}
append_variables(s, out)
return out
"""
)

# ARGV: P, sid, id, name, maxlen. Returns ok + the fields as they were; gives its bytes back.
DELETE_VARIABLE = _script(
    r"""
local sid, id, name = ARGV[2], ARGV[3], ARGV[4]
local s = skey(sid)
if not has_session(s) then return {'session'} end
local vkey = s .. ':v:' .. id
local f = var_fields(vkey)
if not f[1] then return {'variable'} end
var_event(sid, ARGV[5], 'deleted', vkey, '')
add_bytes(s, -var_bytes(s, id))
redis.call('DEL', vkey, s .. ':h:' .. id, s .. ':hb:' .. id)
redis.call('HDEL', s .. ':names', name)
return {'ok', f[1], f[2], f[3], f[4], f[5]}
"""
)

# ARGV: P, sid, now, history_limit, maxlen, max bytes, then 6 per write: id, value, source,
# reason, expected version ('' none), entry bytes. All checked (versions, then the bytes the
# batch adds once each variable's oldest kept entries are trimmed) before anything is written.
WRITE_VARIABLES = _script(
    r"""
local sid, now, keep, maxlen = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local s = skey(sid)
if not has_session(s) then return {'session'} end
local pending, added, kept, trimmed = {}, {}, {}, {}
local grow = 0
for i = 7, #ARGV, 6 do
  local id, expected, size = ARGV[i], ARGV[i + 4], tonumber(ARGV[i + 5])
  local vkey = s .. ':v:' .. id
  local current = pending[id]
  if not current then
    current = redis.call('HGET', vkey, 'version')
    if not current then return {'variable', id} end
    current = tonumber(current)
    added[id], kept[id], trimmed[id] = {}, redis.call('LLEN', s .. ':hb:' .. id), 0
  end
  if expected ~= '' and tonumber(expected) ~= current then
    return {'conflict', id, expected, tostring(current)}
  end
  pending[id] = current + 1
  local new = added[id]
  new[#new + 1] = size
  grow = grow + size
  -- Entries 1..(kept ++ new) - keep are trimmed once this write is kept (more than one when
  -- history_limit was lowered since they were written).
  local upto = 0
  if keep > 0 then upto = kept[id] + #new - keep end
  for place = trimmed[id] + 1, upto do
    if place <= kept[id] then
      grow = grow - tonumber(redis.call('LINDEX', s .. ':hb:' .. id, place - 1))
    else
      grow = grow - new[place - kept[id]]
    end
  end
  if upto > trimmed[id] then trimmed[id] = upto end
end
local refused = over_budget(s, ARGV[6], grow)
if refused then return refused end
local out = {'ok'}
for i = 7, #ARGV, 6 do
  local id, value, src, reason = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local vkey = s .. ':v:' .. id
  local version = redis.call('HINCRBY', vkey, 'version', 1)
  redis.call('HSET', vkey, 'value', value, 'ut', now, 'src', src)
  local hkey, bkey = s .. ':h:' .. id, s .. ':hb:' .. id
  redis.call('RPUSH', hkey, cjson.encode({tostring(version), value, src, reason, now}))
  redis.call('RPUSH', bkey, ARGV[i + 5])
  if keep > 0 then
    redis.call('LTRIM', hkey, -keep, -1)
    redis.call('LTRIM', bkey, -keep, -1)
  end
  var_event(sid, maxlen, 'updated', vkey, reason)
  out[#out + 1] = {tostring(version), redis.call('HGET', vkey, 'meta')}
end
add_bytes(s, grow)
return out
"""
)

# ARGV: P, sid, id, limit (0 all). Returns ok + entries newest last.
VARIABLE_HISTORY = _script(
    r"""
local s = skey(ARGV[2])
if not has_session(s) then return {'session'} end
if redis.call('EXISTS', s .. ':v:' .. ARGV[3]) == 0 then return {'variable'} end
local limit = tonumber(ARGV[4])
local start = 0
if limit > 0 then start = -limit end
return {'ok', redis.call('LRANGE', s .. ':h:' .. ARGV[3], start, -1)}
"""
)

# ARGV: P, sid, module id, document of version 1, max bytes, its bytes.
CREATE_MODULE = _script(
    r"""
local s, mid = skey(ARGV[2]), ARGV[3]
if not has_session(s) then return {'session'} end
if redis.call('HEXISTS', s .. ':mods', mid) == 1 then return {'exists'} end
local refused = over_budget(s, ARGV[5], ARGV[6])
if refused then return refused end
redis.call('HSET', s .. ':mods', mid, '1')
redis.call('HSET', s .. ':mb', mid, ARGV[6])
redis.call('DEL', s .. ':m:' .. mid)
redis.call('RPUSH', s .. ':m:' .. mid, ARGV[4])
add_bytes(s, tonumber(ARGV[6]))
views_stale(s)
return {'ok'}
"""
)

# ARGV: P, sid, module id, expected version, document of the next version, max bytes, its bytes.
PUT_MODULE_VERSION = _script(
    r"""
local s, mid = skey(ARGV[2]), ARGV[3]
if not has_session(s) then return {'session'} end
local current = redis.call('HGET', s .. ':mods', mid)
if not current then return {'module'} end
if current ~= ARGV[4] then return {'conflict', current} end
local refused = over_budget(s, ARGV[6], ARGV[7])
if refused then return refused end
redis.call('HSET', s .. ':mods', mid, tostring(tonumber(current) + 1))
redis.call('RPUSH', s .. ':m:' .. mid, ARGV[5])
redis.call('HINCRBY', s .. ':mb', mid, ARGV[7])
add_bytes(s, tonumber(ARGV[7]))
views_stale(s)
return {'ok'}
"""
)

# ARGV: P, sid, module id, version (0 current).
GET_MODULE = _script(
    r"""
local s = skey(ARGV[2])
if not has_session(s) then return {'session'} end
local doc, err = module_doc(s, ARGV[3], ARGV[4])
if not doc then return err end
return {'ok', doc}
"""
)

# ARGV: P, sid. Returns ok + the current document of each module.
LIST_MODULES = _script(
    r"""
local s = skey(ARGV[2])
if not has_session(s) then return {'session'} end
local out = {'ok'}
local f = redis.call('HGETALL', s .. ':mods')
for i = 1, #f, 2 do
  out[#out + 1] = redis.call('LINDEX', s .. ':m:' .. f[i], tonumber(f[i + 1]) - 1)
end
return out
"""
)

# ARGV: P, sid, module id. Gives the bytes of all its versions back.
DELETE_MODULE = _script(
    r"""
local s, mid = skey(ARGV[2]), ARGV[3]
if not has_session(s) then return {'session'} end
if redis.call('HDEL', s .. ':mods', mid) == 0 then return {'module'} end
add_bytes(s, -tonumber(redis.call('HGET', s .. ':mb', mid) or '0'))
redis.call('HDEL', s .. ':mb', mid)
redis.call('DEL', s .. ':m:' .. mid)
views_stale(s)
return {'ok'}
"""
)

# ARGV: P, sid, job id, document, active ('1'/'0'), replica id, lease ms, max bytes, its bytes,
# owner, max active jobs per owner (0 none). The owner's active jobs on every replica are
# counted from the leased records (stale members are dropped on the way).
CREATE_JOB = _script(
    r"""
local sid, jid, owner, per_owner = ARGV[2], ARGV[3], ARGV[10], tonumber(ARGV[11])
local s = skey(sid)
if not has_session(s) then return {'session'} end
if redis.call('HEXISTS', s .. ':jobs', jid) == 1 then return {'exists'} end
local refused = over_budget(s, ARGV[8], ARGV[9])
if refused then return refused end
local okey = P .. ':ojobs:' .. owner
local counted = ARGV[5] == '1' and per_owner > 0
if counted then
  local live = 0
  for _, member in ipairs(redis.call('SMEMBERS', okey)) do
    if redis.call('SISMEMBER', P .. ':active_jobs', member) == 1
       and redis.call('EXISTS', lease_key(job_member(member))) == 1 then
      live = live + 1
    else
      redis.call('SREM', okey, member)
      redis.call('HDEL', P .. ':active_owner', member)
    end
  end
  if live >= per_owner then return {'quota', tostring(live)} end
end
redis.call('HSET', s .. ':jobs', jid, ARGV[4])
add_bytes(s, tonumber(ARGV[9]))
if ARGV[5] == '1' then
  local member = sid .. '\n' .. jid
  redis.call('SADD', P .. ':active_jobs', member)
  redis.call('SET', lease_key(sid, jid), ARGV[6], 'PX', ARGV[7])
  if counted then
    redis.call('SADD', okey, member)
    redis.call('HSET', P .. ':active_owner', member, owner)
  end
end
return {'ok'}
"""
)

# ARGV: P, sid, job id. Returns ok + the document.
GET_JOB = _script(
    r"""
local s = skey(ARGV[2])
if not has_session(s) then return {'session'} end
local doc = redis.call('HGET', s .. ':jobs', ARGV[3])
if not doc then return {'job'} end
return {'ok', doc}
"""
)

# ARGV: P, sid, job id, the document read, the new document, new status active ('1'/'0').
# Compare-and-set: `stale` when the job changed since it was read (the caller retries).
UPDATE_JOB = _script(
    r"""
local sid, jid = ARGV[2], ARGV[3]
local s = skey(sid)
if not has_session(s) then return {'session'} end
local doc = redis.call('HGET', s .. ':jobs', jid)
if not doc then return {'job'} end
if doc ~= ARGV[4] then return {'stale'} end
redis.call('HSET', s .. ':jobs', jid, ARGV[5])
if ARGV[6] ~= '1' then deactivate(sid, jid) end
return {'ok'}
"""
)

# ARGV: P, sid, job id. Drops a job that is gone or ended from the active set, its lease and
# its caller's share.
DEACTIVATE_JOB = _script(
    r"""
deactivate(ARGV[2], ARGV[3])
return {'ok'}
"""
)

# ARGV: P, sid. Returns ok + every job document.
LIST_JOBS = _script(
    r"""
local s = skey(ARGV[2])
if not has_session(s) then return {'session'} end
return {'ok', redis.call('HVALS', s .. ':jobs')}
"""
)

# ARGV: P, sid, bytes of the session record and its jobs, variable count, then per variable:
# id, record bytes, entry count, the kept entries' bytes (oldest first); then module id, bytes
# pairs. Starts the count of a session stored before it existed (`uncounted`) from what
# `sizes.measure` read: variables and modules deleted since that read are left out, and nothing
# was added meanwhile (every admitting script refuses an uncounted session). A session counted
# meanwhile by another replica keeps its count.
INIT_BUDGET = _script(
    r"""
local s = skey(ARGV[2])
if not has_session(s) then return {'session'} end
if redis.call('HEXISTS', s, 'bytes') == 1 then return {'ok'} end
local total = tonumber(ARGV[3])
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  local id, rb, n = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local exists = redis.call('EXISTS', s .. ':v:' .. id) == 1
  if exists then
    redis.call('HSET', s .. ':v:' .. id, 'rb', ARGV[i + 1])
    redis.call('DEL', s .. ':hb:' .. id)
    total = total + rb
  end
  for j = i + 3, i + 2 + n do
    if exists then
      redis.call('RPUSH', s .. ':hb:' .. id, ARGV[j])
      total = total + tonumber(ARGV[j])
    end
  end
  i = i + 3 + n
end
for j = i, #ARGV, 2 do
  if redis.call('HEXISTS', s .. ':mods', ARGV[j]) == 1 then
    redis.call('HSET', s .. ':mb', ARGV[j], ARGV[j + 1])
    total = total + tonumber(ARGV[j + 1])
  end
end
redis.call('HSET', s, 'bytes', tostring(total))
return {'ok'}
"""
)

# ARGV: P, replica id, lease ms, then sid, job id pairs. Renews the leases this replica holds on
# jobs still active; returns 1 per job still held, 0 per job lost (lapsed, taken, finished).
RENEW_LEASES = _script(
    r"""
local me, ms = ARGV[2], ARGV[3]
local out = {}
for i = 4, #ARGV, 2 do
  local member = ARGV[i] .. '\n' .. ARGV[i + 1]
  local lease = lease_key(ARGV[i], ARGV[i + 1])
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
ORPHANED_JOBS = _script(
    r"""
local out = {}
for _, member in ipairs(redis.call('SMEMBERS', P .. ':active_jobs')) do
  local sid, jid = job_member(member)
  if redis.call('EXISTS', lease_key(sid, jid)) == 0 then
    out[#out + 1] = {sid, jid}
  end
end
return out
"""
)

# ARGV: P, replica id, then sid, job id pairs. Drops this replica's leases (it is stopping): the
# jobs are orphaned at once instead of when the leases would have lapsed.
RELEASE_LEASES = _script(
    r"""
for i = 3, #ARGV, 2 do
  local lease = lease_key(ARGV[i], ARGV[i + 1])
  if redis.call('GET', lease) == ARGV[2] then redis.call('DEL', lease) end
end
return {'ok'}
"""
)

# ARGV: P, sid. Where a new watcher of the session starts: {epoch, seq, last stream entry id}.
WATCH_POSITION = _script(
    r"""
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
EXECUTION_VIEW = _script(
    r"""
local s = skey(ARGV[2])
local stamp = redis.call('HMGET', s, 'epoch', 'seq', 'gen', 'expire_time')
if not stamp[1] then return {'session'} end
if stamp[1] == ARGV[5] and stamp[2] == ARGV[6] and (stamp[3] or '0') == ARGV[7] then
  return {'same', stamp[4]}
end
local f = redis.call('HGETALL', s)
local doc, err = module_doc(s, ARGV[3], ARGV[4])
if not doc then return err end
local out = {'ok', f, redis.call('HLEN', s .. ':names'), redis.call('HLEN', s .. ':mods'), doc}
append_variables(s, out)
return out
"""
)
