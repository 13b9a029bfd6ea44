-- Build: the central side makes a train (doc/protocol.md §2-6). The immutable
-- files are hashed into e_h, the creator signs e_h, the builder signs
-- e_h || e_h_sig, every file is encrypted under a fresh key wrapped for the
-- first stop only, and the image gets /opt on top of the base image, tagged
-- REPO:latest, with the base tagged REPO:base beside it.
--
-- Context in:  ctx.options.files_dir or .files ({name=, path=}), .query,
--              .stops ({station=, key_path=, eco_system=}), .creator_id,
--              .creator_key, .creator_password, .builder_key,
--              .builder_password, .base, .output, .train_id, .proposal_id, .tmpdir
-- Context out: ctx.config, ctx.e_h, ctx.train_id, ctx.written, ctx.base_written
local pht = require "pht"
local workflow = require "pht.workflow"
local files = require "pht.files"
local fs = require "pht.fs"
local ref = require "pht.ref"
local train = require "pht.train"

local wf = workflow.new("build")
local MAX_PEM = 64 * 1024 -- a public key PEM of any RSA size fits
local hex = pht.hex

-- The output is checked before any work: its form, and that where it goes
-- can be written (an archive's directory, a layout's parent, the Docker
-- engine answering, the registry answering with these credentials).
wf:add("check_output", function(ctx)
  local out = ctx.options.output
  local base_ref = out and not ref.unnamed_archive(out) and ref.base(out)
  if not base_ref then
    return nil, "the output must be docker-archive:PATH:REPO:TAG, oci:DIR[:TAG], docker-daemon:REPO[:TAG] "
      .. "or docker://HOST/REPO[:TAG], got " .. tostring(out)
  end
  local r, err = pht.parse_ref(out)
  if not r then return nil, err end
  if r.path then
    local parent = r.path:match("^(.*)/[^/]*$") or "."
    if parent ~= "" and not fs.exists(parent) then
      return nil, "cannot write " .. out .. ": " .. parent .. " does not exist"
    end
  elseif r.transport == "docker" then
    local reg, rerr = pht.open_registry(r.host, train.open_extra(ctx.options))
    local ok, perr = reg, rerr
    if reg then ok, perr = reg:ping() end
    if not ok then return nil, "cannot reach the registry of " .. out .. ": " .. tostring(perr) end
  elseif r.transport == "docker-daemon" and pht.open_docker then
    local d, derr = pht.open_docker(nil, ctx.options.docker_timeout)
    local ok, perr = d, derr
    if d then ok, perr = d:ping() end
    if not ok then return nil, "cannot reach the Docker engine for " .. out .. ": " .. tostring(perr) end
  end
  return true
end, { kind = "io", protocol = "§1" })

local function load_private(path, password, who)
  local key, err = pht.load_private_key_file(path, password)
  if not key then return nil, "cannot load the " .. who .. "'s private key " .. path .. ": " .. tostring(err) end
  return key
end

wf:add("load_keys", function(ctx)
  local o = ctx.options
  local creator, builder, err
  creator, err = load_private(o.creator_key, o.creator_password, "creator")
  if not creator then return nil, err end
  ctx.creator_key = creator
  ctx:defer(function() creator:close() end)
  if o.builder_key then
    builder, err = load_private(o.builder_key, o.builder_password, "builder")
    if not builder then return nil, err end
  else
    builder, err = pht.generate_key(2048) -- a fresh key per build, like the central service
    if not builder then return nil, "cannot generate the builder's key: " .. tostring(err) end
  end
  ctx.builder_key = builder
  ctx:defer(function() builder:close() end)
  ctx.route_keys = {}
  for i, s in ipairs(o.stops) do
    local pem, rerr = fs.read(s.key_path, MAX_PEM)
    if not pem then return nil, "cannot read station " .. s.station .. "'s public key: " .. tostring(rerr) end
    local pub, perr = pht.load_public_key(pem)
    if not pub then return nil, "station " .. s.station .. "'s key " .. s.key_path .. ": " .. tostring(perr) end
    ctx.route_keys[i] = pub
  end
  return true
end, { kind = "io", protocol = "§5" })

-- The immutable files in file_list order; query.json last and unlisted.
wf:add("read_files", function(ctx)
  local o = ctx.options
  local list = {}
  if o.files_dir then
    local entries, err = fs.list_tree(o.files_dir)
    if not entries then return nil, "cannot list " .. o.files_dir .. ": " .. tostring(err) end
    local paths = {}
    for _, e in ipairs(entries) do
      if e.type == "other" then return nil, o.files_dir .. "/" .. e.path .. " is not a regular file or directory" end
      if e.type == "file" and e.path ~= train.QUERY then paths[#paths + 1] = e.path end
    end
    for _, p in ipairs(pht.walk_sort(paths)) do
      list[#list + 1] = files.record(p, { plain = o.files_dir .. "/" .. p })
    end
    if not o.query and fs.exists(o.files_dir .. "/" .. train.QUERY) then
      o.query = o.files_dir .. "/" .. train.QUERY
    end
  else
    for _, f in ipairs(o.files) do
      if f.name == train.QUERY then return nil, "give query.json with --query, not as a listed file" end
      if f.name:match("^/") or f.name:match("%.%.") then return nil, "bad file name " .. f.name end
      list[#list + 1] = files.record(f.name, { plain = f.path })
    end
  end
  if #list == 0 then return nil, "the train has no files" end
  for _, f in ipairs(list) do
    if not fs.exists(f.plain) then return nil, "cannot read " .. f.plain end
  end
  if o.query then
    if not fs.exists(o.query) then return nil, "cannot read " .. o.query end
    list[#list + 1] = files.record(train.QUERY, { plain = o.query, query = true })
  end
  ctx.train = list
  return true
end, { kind = "io", protocol = "§3" })

-- What `docker run IMAGE` starts: one of the train's files under /bin/sh
-- (plaintext once a station's pre-run decrypted it): --run NAME, else
-- entrypoint.sh when the train has one; "none" keeps the base's command.
wf:add("choose_command", function(ctx)
  local run = ctx.options.run
  local has = {}
  for _, f in ipairs(ctx.train) do has[f.path] = true end
  if run == nil then run = has["entrypoint.sh"] and "entrypoint.sh" or "none" end
  if run ~= "none" and not has[run] then
    return nil, "--run " .. run .. " is not one of the train's files"
  end
  ctx.run_file = run ~= "none" and run or nil
  return true
end, { kind = "verify", protocol = "§1" })

wf:add("make_session", function(ctx)
  ctx.session_id = pht.random(64)
  ctx.train_id = ctx.options.train_id or hex(pht.random(16))
  return true
end, { kind = "crypto", protocol = "§2" })

-- §4: e_h = SHA-512(creator id || files in list order || session id || query).
wf:add("compute_immutable_hash", function(ctx)
  local e_h, err = files.immutable_hash(ctx.options.creator_id, ctx.session_id, ctx.train)
  if not e_h then return nil, err end
  ctx.e_h = e_h
  return true
end, { kind = "crypto", protocol = "§4" })

-- §5: the creator signs e_h; the builder signs e_h || e_h_sig.
wf:add("sign_immutable_hash", function(ctx)
  local sig, err = ctx.creator_key:sign(ctx.e_h)
  if not sig then return nil, "cannot sign e_h: " .. tostring(err) end
  ctx.e_h_sig = sig
  return true
end, { kind = "crypto", protocol = "§5" })

wf:add("sign_build", function(ctx)
  local sig, err = ctx.builder_key:sign(ctx.e_h .. ctx.e_h_sig)
  if not sig then return nil, "cannot sign the build: " .. tostring(err) end
  ctx.build_sig = sig
  return true
end, { kind = "crypto", protocol = "§5" })

-- §6: a fresh key; each file encrypted on its own with a fresh IV.
wf:add("encrypt_files", function(ctx)
  local symkey = pht.new_symkey()
  ctx.symkey = symkey
  ctx:defer(function() symkey:close() end)
  return files.encrypt_all(symkey, ctx.train, ctx:tempdir(), "train")
end, { kind = "crypto", protocol = "§6" })

-- The central service wraps the first key for the stop with index 0 only.
wf:add("wrap_key", function(ctx)
  local wrapped, err = ctx.route_keys[1]:wrap(ctx.symkey)
  if not wrapped then return nil, "cannot wrap the key for the first stop: " .. tostring(err) end
  ctx.first_key = wrapped
  return true
end, { kind = "crypto", protocol = "§6" })

wf:add("make_config", function(ctx)
  local o = ctx.options
  ctx.repository = ref.source_address(o.output)
  local route = {}
  for i, s in ipairs(o.stops) do
    route[i] = { station = s.station, eco_system = s.eco_system, index = i - 1,
      rsa_public_key = ctx.route_keys[i]:public_hex(),
      encrypted_key = i == 1 and hex(ctx.first_key) or nil }
  end
  local file_list = {}
  for _, f in ipairs(ctx.train) do if not f.query then file_list[#file_list + 1] = f.path end end
  local cfg, err = pht.new_config({
    ["@id"] = ctx.train_id,
    source = { type = "docker_repository", address = ctx.repository, tag = "latest" },
    creator = { id = o.creator_id, rsa_public_key = ctx.creator_key:public_hex() },
    proposal_id = o.proposal_id or 1,
    session_id = hex(ctx.session_id),
    route = route,
    file_list = file_list,
    hash = hex(ctx.e_h),
    signature = hex(ctx.e_h_sig),
    build = { signature = hex(ctx.build_sig), rsa_public_key = ctx.builder_key:public_hex() },
  })
  if not cfg then return nil, err end
  local ok, verr = cfg:validate()
  if not ok then return nil, verr end
  ctx.config = cfg
  return true
end, { kind = "verify", protocol = "§2" })

wf:add("open_base", function(ctx)
  local img, err = train.open_image(ctx.options.base, ctx.options.tmpdir, nil, train.open_extra(ctx.options))
  if not img then return nil, err end
  ctx.image = img
  ctx:defer(function() img:close() end)
  return true
end, { kind = "io", protocol = "§1" })

wf:add("write_image", function(ctx)
  local out = ctx.options.output
  local base_ref = not ref.unnamed_archive(out) and ref.base(out)
  if not base_ref then
    return nil, "the output must be docker-archive:PATH:REPO:TAG, oci:DIR[:TAG], docker-daemon:REPO[:TAG] "
      .. "or docker://HOST/REPO[:TAG], got " .. tostring(out)
  end
  local w, err = ctx.image:writer({ tmpdir = ctx.options.tmpdir })
  if not w then return nil, "cannot start writing the image: " .. tostring(err) end
  local paths = {}
  for i, f in ipairs(files.write_from(ctx.train, "cipher")) do paths[i] = f.path end
  local entries = {}
  for d in pairs(files.parent_dirs(paths)) do entries[#entries + 1] = { path = d, type = "dir" } end
  table.sort(entries, function(a, b) return a.path < b.path end)
  local ok, werr = train.write_opt(w, ctx.config:to_json(false))
  if ok then ok, werr = train.write_tree(w, train.TRAIN, entries, ctx.train) end
  if ok then ok, werr = w:add_dir(train.RESULTS, { mode = fs.MODE_DIR, opaque = true }) end
  -- What `docker run IMAGE` starts (see choose_command).
  if ok and ctx.run_file then
    ok, werr = w:set_config({ cmd = { "/bin/sh", train.TRAIN .. "/" .. ctx.run_file }, entrypoint = false })
  end
  ok, werr = train.commit(ctx, w, ok, werr, { history = "libpht build", comment = "train " .. ctx.train_id })
  if not ok then return nil, werr end
  ok, werr = ctx.image:retag(base_ref)
  if not ok then return nil, "cannot tag the base image as " .. base_ref .. ": " .. tostring(werr) end
  ctx.base_written = base_ref
  return true
end, { kind = "write", writes = true, protocol = "§1" })

return wf
