-- The steps the stock workflows share (scripts/pre_run.lua, post_run.lua,
-- decrypt_results.lua): each is a step function (ctx, step) for
-- pht.workflow that takes what it needs from the context, calls the
-- protocol module that does the work (pht.train, pht.files, pht.route,
-- pht.checks) and stores what it established back in the context. The
-- scripts add them under their own names.
local pht = require "pht"
local checks = require "pht.checks"
local files = require "pht.files"
local route = require "pht.route"
local train = require "pht.train"

local M = {}

-- The train and the station ---------------------------------------------------------

-- opts.verify_behind: the open's digest checks of plain tar layers run on a
-- thread while the next steps go on; the commit of the run's writer (and
-- check_master, and ctx.image:verified()) waits for their verdict, so a
-- workflow that writes anything outside the image must not set it.
function M.open_image(ctx, opts)
  local extra = train.open_extra(ctx.options)
  extra.progress = ctx:count_bytes()
  extra.verify_behind = opts and opts.verify_behind or nil
  local img, err = train.open_image(ctx.options.image, ctx.options.tmpdir, ctx.options.verify_layers, extra)
  if not img then return nil, err end
  ctx.image = img
  ctx:defer(function() img:close() end)
  if extra.progress then
    -- What the image moves later (extracts; a docker-daemon image lands /opt
    -- on first use) counts for the step running then.
    img:set_progress(function(n)
      local add = ctx.step and ctx:count_bytes()
      if add then add(n) end
    end)
    ctx:defer(function() img:set_progress(nil) end)
  end
  return true
end

-- Why check_master is skipped without masters.
M.NO_MASTER = "no master image given: changes outside /opt are not checked"

-- The station's master images (doc/station-guide.md, "Trusted master
-- images"): options.masters, references or image ids, opened once per
-- context into ctx.masters ({ref=, image=}); {} when none is given.
function M.open_masters(ctx)
  if ctx.masters then return ctx.masters end
  local list = {}
  for _, r in ipairs(ctx.options.masters or {}) do
    local img, err = train.open_master(r, ctx.options.tmpdir, train.open_extra(ctx.options))
    if not img then return nil, err end
    ctx:defer(function() img:close() end)
    list[#list + 1] = { ref = r, image = img }
  end
  ctx.masters = list
  return list
end

-- The train keeps to one of the masters (pht.checks.master; top as there):
-- ctx.master is the one it was built on.
function M.check_master(ctx, top)
  local masters, err = M.open_masters(ctx)
  if not masters then return nil, err end
  local m, merr = checks.master(ctx.image, masters, top)
  if not m then return nil, merr end
  ctx.master = m
  return true
end

function M.check_not_decrypted(ctx)
  return checks.not_decrypted(ctx.image)
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
  local key, err, code = pht.load_private_key_file(path, ctx.options.password)
  if not key then
    local hint = ""
    if code == "EKEY" and ctx.options.password == nil and ctx.options.password_hint then
      hint = "; " .. ctx.options.password_hint
    end
    return nil, "cannot load the private key " .. tostring(path) .. ": " .. tostring(err) .. hint
  end
  ctx.key = key
  ctx:defer(function() key:close() end)
  return true
end

-- The station's stop on the route: ctx.stop, ctx.pos, ctx.stops.
function M.find_station(ctx)
  local stop, pos, stops = route.find_stop(ctx.config, ctx.options.station)
  if not stop then return nil, pos end
  ctx.stop, ctx.pos, ctx.stops = stop, pos, stops
  return true
end

-- The private key belongs to the station's stop.
function M.check_station_key(ctx)
  local station = tostring(ctx.stop.station)
  return checks.private_key_is(ctx.key, ctx.stop.rsa_public_key, "the route's key of station " .. station,
    "station " .. station .. "'s key on the route")
end

-- The private key is the creator's.
function M.check_creator_key(ctx)
  local creator = ctx.config:get("creator") or {}
  return checks.private_key_is(ctx.key, creator.rsa_public_key, "creator.rsa_public_key", "the creator's")
end

function M.check_turn(ctx)
  return checks.turn(ctx.config, ctx.stops, ctx.pos)
end

-- The stop that wrote the results, the last one that signed: ctx.last,
-- ctx.last_pos, ctx.stops.
function M.find_last_stop(ctx)
  local stops = ctx.config:route()
  local last, pos = route.last_signed(stops)
  if not last then return nil, "no station has signed results yet" end
  ctx.last, ctx.last_pos, ctx.stops = last, pos, stops
  return true
end

-- Unwrap the symmetric key `wrapped` (raw bytes) with ctx.key: ctx.symkey,
-- closed at cleanup. `failure` begins the message when the unwrap fails.
function M.unwrap(ctx, wrapped, failure)
  local symkey, err = ctx.key:unwrap(wrapped)
  if not symkey then return nil, failure .. ": " .. tostring(err) end
  ctx.symkey = symkey
  ctx:defer(function() symkey:close() end)
  return true
end

-- The steps with which pre-run and post-run place the station on the
-- train's route, added to wf in this order: read_config, load_key,
-- find_station, check_station_key, check_turn.
function M.add_station_steps(wf)
  wf:add("read_config", M.read_config, { kind = "verify", protocol = "§2" })
  wf:add("load_key", M.load_key, { kind = "io", protocol = "§6" })
  wf:add("find_station", M.find_station, { kind = "verify", protocol = "§7.1" })
  wf:add("check_station_key", M.check_station_key, { kind = "verify", protocol = "§9" })
  wf:add("check_turn", M.check_turn, { kind = "verify", protocol = "§9" })
  return wf
end

-- The files ---------------------------------------------------------------------------

-- /opt/pht_train holds exactly file_list plus an optional query.json:
-- ctx.train_entries, ctx.train (records in hashing order).
function M.check_immutable_files(ctx)
  local entries, err = train.list(ctx.image, train.TRAIN)
  if not entries then return nil, err end
  local ok, why = checks.immutable_files(ctx.config, entries)
  if not ok then return nil, why end
  ctx.train_entries = entries
  ctx.train = files.train_files(ctx.config, entries)
  return true
end

-- The results tree holds only regular files and directories:
-- ctx.results_entries, ctx.results (records in hashing order).
function M.list_results(ctx)
  local entries, err = train.list(ctx.image, train.RESULTS)
  if not entries then return nil, err end
  local ok, why = checks.results_entries(entries)
  if not ok then return nil, why end
  ctx.results_entries = entries
  ctx.results = files.in_walk_order(entries)
  return true
end

-- The bytes of the regular files of a listing (train.list).
-- The function a one-pass call reports its bytes to: the step's progress
-- counter (ctx:count_bytes, given total) and ctx.progress_bytes, either or
-- both; nil when nobody listens.
function M.bytes_progress(ctx, total)
  local add, also = ctx:count_bytes(total), ctx.progress_bytes
  if add and also then return function(n) add(n); also(n) end end
  return add or also
end

local function entries_bytes(entries)
  local n = 0
  for _, e in ipairs(entries or {}) do
    if e.type == "file" then n = n + (e.size or 0) end
  end
  return n
end

-- Decrypt the tree dir of the image into the private temporary directory:
-- every record of `list` gets .plain. Returns the root of the extracted
-- ciphertext, or nil, message. `entries` (optional, the tree's listing)
-- gives the step's progress its total: the tree extracted, then decrypted.
function M.decrypt_tree(ctx, dir, list, label, entries)
  local tmp = ctx:tempdir()
  -- The image's progress function (M.open_image) counts the extract here.
  local add = ctx:count_bytes(entries and 2 * entries_bytes(entries) or nil)
  local root, err = files.extract(ctx.image, dir, tmp, label .. ".enc")
  if not root then return nil, err end
  local ok, derr = files.decrypt_all(ctx.symkey, list, root, tmp, label, add)
  if not ok then return nil, derr end
  return root
end

-- The image writer of this run, ctx.writer: made on first use with opts
-- (ctx.image:writer's options) and closed at cleanup. The steps that move
-- files in one pass put them straight into it; write_image commits it.
function M.writer(ctx, opts)
  if ctx.writer then return ctx.writer end
  opts = opts or {}
  if opts.dest == nil and (ctx.options.output or ctx.options.image) then
    -- where write_image commits: a docker-archive there is built around the new layer
    opts.dest = train.commit_target(ctx)
  end
  local w, err = ctx.image:writer(opts)
  if not w then return nil, "cannot start writing the image: " .. tostring(err) end
  ctx.writer = w
  ctx:defer(function() w:close() end)
  return w
end

-- Decrypt the tree dir straight into the new layer of ctx.writer (made with
-- writer_opts) in one pass, every file fed to `hasher` in the order of
-- `list` on the way: its digest, or nil and a message. Only the ciphertext
-- is extracted to the private temporary directory; no plaintext file is
-- written. The entries carry mtime 0 (see pre-run's write_image).
function M.decrypt_into_layer(ctx, dir, entries, list, label, hasher, writer_opts)
  -- progress: the ciphertext's size, which the plaintext is within 32 bytes a file of
  local progress = M.bytes_progress(ctx, entries_bytes(entries))
  local w, err = M.writer(ctx, writer_opts)
  if not w then return nil, err end
  -- a tree in a plain tar layer is read where it is; any other is extracted first
  local root
  if not ctx.image:in_place(dir) then
    local xerr
    root, xerr = files.extract(ctx.image, dir, ctx:tempdir(), label .. ".enc")
    if not root then return nil, xerr end
  end
  local ok, derr = train.write_dirs(w, dir, entries, 0)
  if ok then
    ok, derr = files.decrypt_into(w, ctx.symkey, dir, list, root, { hash = hasher, mtime = 0,
      progress = progress, image = ctx.image })
  end
  if not ok then return nil, derr end
  return hasher:digest()
end

-- Extract the plaintext tree dir of the image: every record of `list`
-- points .plain at its extracted file. `entries` as for M.decrypt_tree.
-- With opts.in_place, a tree the image holds in a plain tar layer, or in
-- compressed layers in walk order (what docker commit writes), is not
-- extracted: the records point at it in the image (files.in_image), and the
-- step that reads them streams each file once.
function M.read_tree(ctx, dir, list, label, entries, opts)
  if opts and opts.in_place and (ctx.image:in_place(dir) or ctx.image:in_order(dir)) then
    files.in_image(list, ctx.image, dir, entries)
    return true
  end
  ctx:count_bytes(entries and entries_bytes(entries) or nil)
  local root, err = files.extract(ctx.image, dir, ctx:tempdir(), label .. ".plain")
  if not root then return nil, err end
  files.plain_under(list, root)
  return true
end

-- Hashes and signatures ------------------------------------------------------------------

-- A step that stores what check(ctx) established as ctx[key].
local function establish(key, check)
  return function(ctx)
    local value, err = check(ctx)
    if not value then return nil, err end
    ctx[key] = value
    return true
  end
end

-- e_h over ctx.train's plaintext equals the config's hash: ctx.e_h. The
-- digest of a one-pass step (ctx.train_digest) stands for the plaintext.
M.verify_immutable_hash = establish("e_h", function(ctx)
  local add = not ctx.train_digest and ctx:count_bytes(function() return files.plain_bytes(ctx.train) end) or nil
  return checks.immutable_hash(ctx.config, ctx.train, ctx.train_digest, add)
end)

function M.verify_creator_signature(ctx)
  return checks.creator_signature(ctx.config, ctx.e_h)
end

function M.verify_build_signature(ctx)
  return checks.build_signature(ctx.config, ctx.e_h)
end

-- e_d over ctx.results' plaintext equals the config's result_hash: ctx.e_d
-- (ctx.results_digest, when a one-pass step computed it).
M.verify_result_hash = establish("e_d", function(ctx)
  local add = not ctx.results_digest and ctx:count_bytes(function() return files.plain_bytes(ctx.results) end) or nil
  return checks.results_hash(ctx.config, ctx.results, ctx.results_digest, add)
end)

return M
