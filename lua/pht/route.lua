-- The route (doc/protocol.md §2, §5, §8.6): its stops in index order, the stop
-- of a station, whose turn it is, the last stop that signed, the chain
-- prefix X a stop's digest is computed over, and wrapping a key for every
-- stop and the creator. `stops` is always cfg:route(): sorted by index,
-- positions 1-based.
local pht = require "pht"
local field = require "pht.field"

local M = {}

local fmt = string.format

-- "station ID (index N)", how messages name a stop.
function M.stop_name(s)
  return fmt("station %s (index %d)", tostring(s.station), s.index)
end

-- The station ids of the route, comma-separated, for messages.
function M.names(stops)
  local names = {}
  for i, s in ipairs(stops) do names[i] = tostring(s.station) end
  return table.concat(names, ", ")
end

-- The stop of `station`, its position and the sorted stops (§7.1).
function M.find_stop(cfg, station)
  local stops = cfg:route()
  for pos, s in ipairs(stops) do
    if tostring(s.station) == tostring(station) then return s, pos, stops end
  end
  return nil, fmt("station %s is not on the route (route: %s)", tostring(station), M.names(stops))
end

-- The last stop that signed and its position, or nil when none has: the
-- stop that wrote the current results.
function M.last_signed(stops)
  for pos = #stops, 1, -1 do
    if stops[pos].signature then return stops[pos], pos end
  end
  return nil
end

-- The stop after the last one that signed, whose turn it is, and its
-- position (nil when every stop has signed: the train is home).
function M.next_stop(stops)
  local _, last = M.last_signed(stops)
  local pos = (last or 0) + 1
  return stops[pos], stops[pos] and pos or nil
end

-- The raw chain digests of the stops before position pos, concatenated: the
-- X of §5 for the stop at pos (the session id for the first).
function M.chain_prefix(cfg, stops, pos)
  if pos == 1 then return cfg:session_id() end
  local parts = {}
  for i = 1, pos - 1 do
    local sig = stops[i].signature
    if not sig then return nil, fmt("stop %s (index %d) has no signature", tostring(stops[i].station), stops[i].index) end
    local raw, err = field.unhex(sig.digest, fmt("route[%d].signature.digest", stops[i].index))
    if not raw then return nil, err end
    parts[#parts + 1] = raw
  end
  return table.concat(parts)
end

-- Wrap symkey for the public key in hex field `what`; `whom` names the
-- recipient in the message.
local function wrap_for(symkey, hex, what, whom)
  local pub, err = field.public_key(hex, what)
  if not pub then return nil, err end
  local wrapped, werr = pub:wrap(symkey)
  if not wrapped then return nil, "cannot wrap the key for " .. whom .. ": " .. tostring(werr) end
  return wrapped
end

-- §8.6: wrap symkey for every stop and for the creator and set the
-- config's encrypted_key fields. Returns the creator's wrapped key (the
-- bytes of /opt/user_sym_key.key), or nil, message.
function M.wrap_keys(cfg, stops, symkey)
  for _, s in ipairs(stops) do
    local wrapped, err = wrap_for(symkey, s.rsa_public_key, fmt("route[%d].rsa_public_key", s.index),
      "station " .. tostring(s.station))
    if not wrapped then return nil, err end
    local ok, serr = cfg:set_stop_key(s.index, pht.hex(wrapped))
    if not ok then return nil, serr end
  end
  local creator = cfg:get("creator") or {}
  local wrapped, err = wrap_for(symkey, creator.rsa_public_key, "creator.rsa_public_key", "the creator")
  if not wrapped then return nil, err end
  local ok, cerr = cfg:set_creator_key(pht.hex(wrapped))
  if not ok then return nil, cerr end
  return wrapped
end

return M
