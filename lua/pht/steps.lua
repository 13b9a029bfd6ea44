-- Steps shared by the stock workflows (scripts/pre_run.lua, post_run.lua,
-- decrypt_results.lua): opening the image, reading the config, the
-- station's key and its place on the route. Each is a step function
-- (ctx, step) for pht.workflow; the scripts add them under these names.
local pht = require "pht"
local train = require "pht.train"

local M = {}

function M.open_image(ctx)
  local img, err = train.open_image(ctx.options.image, ctx.options.tmpdir)
  if not img then return nil, err end
  ctx.image = img
  ctx:defer(function() img:close() end)
  return true
end

function M.read_config(ctx)
  local cfg, err = train.read_config(ctx.image)
  if not cfg then return nil, err end
  ctx.config = cfg
  return true
end

-- The private key from options.key_path, decrypted with options.password.
function M.load_key(ctx)
  local path = ctx.options.key_path
  local key, err = pht.load_private_key_file(path, ctx.options.password)
  if not key then return nil, "cannot load the private key " .. tostring(path) .. ": " .. tostring(err) end
  ctx.key = key
  ctx:defer(function() key:close() end)
  return true
end

-- §7.1: the station's stop on the route.
function M.find_station(ctx)
  local stop, pos, stops = train.find_stop(ctx.config, ctx.options.station)
  if not stop then return nil, pos end
  ctx.stop, ctx.pos, ctx.stops = stop, pos, stops
  return true
end

-- The private key belongs to the station's stop (else unwrap would fail with
-- an OAEP error that does not say why).
function M.check_station_key(ctx)
  local pub, err = train.public_key(ctx.stop.rsa_public_key,
    "the route's key of station " .. ctx.stop.station)
  if not pub then return nil, err end
  if pub:fingerprint() ~= ctx.key:fingerprint() then
    return nil, string.format("the private key (fingerprint %s) is not station %s's key on the route (%s)",
      ctx.key:fingerprint():sub(1, 16), ctx.stop.station, pub:fingerprint():sub(1, 16))
  end
  return true
end

-- §9: the train comes to the stop after the last one that signed, and
-- result_hash is set exactly when some stop has signed.
function M.check_turn(ctx)
  local last = 0
  for pos, s in ipairs(ctx.stops) do if s.signature then last = pos end end
  local has_results = ctx.config:get("result_hash") ~= nil
  if last == 0 and has_results then return nil, "result_hash is set but no stop has signed" end
  if last > 0 and not has_results then return nil, "stops have signed but result_hash is null" end
  if ctx.pos ~= last + 1 then
    local due = ctx.stops[last + 1]
    if not due then return nil, "every stop has signed: the train's route is complete" end
    return nil, string.format("it is station %s's turn (index %d), not station %s's (index %d)",
      due.station, due.index, ctx.stop.station, ctx.stop.index)
  end
  return true
end

-- §9: /opt/pht_train holds exactly file_list plus an optional query.json.
function M.check_immutable_files(ctx)
  local entries, err = train.list(ctx.image, train.TRAIN)
  if not entries then return nil, err end
  local ok, why = train.check_train_files(ctx.config, entries)
  if not ok then return nil, why end
  ctx.train_entries = entries
  ctx.train = train.train_files(ctx.config, entries)
  return true
end

-- §9: the results tree holds only regular files and directories; lists
-- them in hashing order as ctx.results.
function M.list_results(ctx)
  local entries, err = train.list(ctx.image, train.RESULTS)
  if not entries then return nil, err end
  for _, e in ipairs(entries) do
    if e.type ~= "file" and e.type ~= "dir" then
      return nil, string.format("%s/%s is a %s: results hold only files and directories",
        train.RESULTS, e.path, tostring(e.type))
    end
  end
  ctx.results_entries = entries
  ctx.results = {}
  for _, p in ipairs(train.files_in_walk_order(entries)) do
    ctx.results[#ctx.results + 1] = { path = p }
  end
  return true
end

-- e_h over ctx.train's plaintext equals the config's hash.
function M.verify_immutable_hash(ctx)
  local e_h, err = train.immutable_hash(ctx.config, ctx.train)
  if not e_h then return nil, err end
  local want = train.unhex(ctx.config:get("hash"), "hash")
  if e_h ~= want then
    return nil, string.format("immutable files have changed: e_h is %s, the config's hash is %s",
      train.short(e_h), want and train.short(want) or "missing")
  end
  ctx.e_h = e_h
  return true
end

return M
