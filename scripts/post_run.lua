-- Post-run: what a station does after the train ran (PROTOCOL.md §8, with
-- the stricter rules of §9). The station hashes and signs the results,
-- extends the route's signature chain, re-encrypts everything under a fresh
-- key for the route and the creator, and writes a train that holds no
-- plaintext in any layer: the output is built on the layers below the one
-- pre-run marked (or on REPO:base with --rebase) plus one new layer holding
-- the whole /opt.
--
-- Context in:  ctx.options.image, .output, .station, .key_path, .password,
--              .tmpdir, .rebase (bool), .base (ref, optional)
-- Context out: ctx.config (updated), ctx.e_d, ctx.digest, ctx.symkey
local pht = require "pht"
local workflow = require "pht.workflow"
local train = require "pht.train"
local steps = require "pht.steps"

local wf = workflow.new("post-run")
local hex = pht.hex

-- The train and the station ------------------------------------------------------

wf:add("open_image", steps.open_image, { kind = "io" })
wf:add("read_config", steps.read_config, { kind = "verify" })
wf:add("load_key", steps.load_key, { kind = "io" })
wf:add("find_station", steps.find_station, { kind = "verify" })
wf:add("check_station_key", steps.check_station_key, { kind = "verify" })
wf:add("check_turn", steps.check_turn, { kind = "verify" })

-- §9: what the output is built on, so no plaintext layer survives.
wf:add("find_base", function(ctx)
  if ctx.options.rebase then
    local ref, err = ctx.options.base, nil
    if not ref then ref, err = train.base_ref(ctx.options.image, ctx.image) end
    if not ref then return nil, err end
    local base, berr = train.open_image(ref, ctx.options.tmpdir)
    if not base then return nil, "cannot open the base image for --rebase: " .. tostring(berr) end
    ctx:defer(function() base:close() end)
    ctx.base_image, ctx.base_ref = base, ref
    return true
  end
  local mark = train.pre_run_layer(ctx.image)
  if not mark then
    return nil, "no layer of this image was written by libpht pre-run, so the layers holding plaintext "
      .. "cannot be told apart; use --rebase to build on REPO:base"
  end
  ctx.keep_layers = mark - 1
  return true
end, { kind = "verify" })

-- The algorithm must not have changed itself while it ran.
wf:add("check_immutable_files", steps.check_immutable_files, { kind = "verify" })

wf:add("read_train", function(ctx)
  local root, err = train.extract(ctx.image, train.TRAIN, ctx:tempdir(), "train.plain")
  if not root then return nil, err end
  for _, f in ipairs(ctx.train) do f.plain = root .. "/" .. f.path end
  return true
end, { kind = "io" })

wf:add("verify_immutable_hash", steps.verify_immutable_hash, { kind = "verify" })

-- §8.1: the results as the algorithm left them: only files and directories.
wf:add("check_results_files", steps.list_results, { kind = "verify" })

wf:add("read_results", function(ctx)
  if #ctx.results_entries == 0 then return true end
  local root, err = train.extract(ctx.image, train.RESULTS, ctx:tempdir(), "results.plain")
  if not root then return nil, err end
  for _, f in ipairs(ctx.results) do f.plain = root .. "/" .. f.path end
  return true
end, { kind = "io" })

-- §8.2: e_d.
wf:add("hash_results", function(ctx)
  local e_d, err = train.results_hash(ctx.config, ctx.results)
  if not e_d then return nil, err end
  ctx.e_d = e_d
  return ctx.config:set("result_hash", hex(e_d))
end, { kind = "crypto" })

-- §8.3: e_d_sig.
wf:add("sign_results", function(ctx)
  local sig, err = ctx.key:sign_digest(ctx.e_d)
  if not sig then return nil, "cannot sign e_d: " .. tostring(err) end
  return ctx.config:set("result_signature", hex(sig))
end, { kind = "crypto" })

-- §8.4: this stop's link of the chain.
wf:add("sign_chain_digest", function(ctx)
  local prefix, err = train.chain_prefix(ctx.config, ctx.stops, ctx.pos)
  if not prefix then return nil, err end
  local digest = pht.chain_digest(prefix, ctx.e_d)
  local sig, serr = ctx.key:sign_digest(digest)
  if not sig then return nil, "cannot sign the chain digest: " .. tostring(serr) end
  ctx.digest = digest
  return ctx.config:set_stop_signature(ctx.stop.index, hex(digest), hex(sig))
end, { kind = "crypto" })

-- §8.5: a fresh key; every file encrypted on its own with a fresh IV.
wf:add("encrypt_files", function(ctx)
  local symkey = pht.new_symkey()
  ctx.symkey = symkey
  ctx:defer(function() symkey:close() end)
  local tmp = ctx:tempdir()
  local ok, err = train.encrypt_all(symkey, ctx.train, tmp, "train")
  if ok then ok, err = train.encrypt_all(symkey, ctx.results, tmp, "results") end
  return ok, err
end, { kind = "crypto" })

-- §8.6: the key for every stop and for the creator.
wf:add("wrap_keys", function(ctx)
  for _, s in ipairs(ctx.stops) do
    local pub, err = train.public_key(s.rsa_public_key, "route[" .. s.index .. "].rsa_public_key")
    if not pub then return nil, err end
    local wrapped, werr = pub:wrap(ctx.symkey)
    if not wrapped then return nil, "cannot wrap the key for station " .. s.station .. ": " .. tostring(werr) end
    local ok, serr = ctx.config:set_stop_key(s.index, hex(wrapped))
    if not ok then return nil, serr end
  end
  local creator = ctx.config:get("creator") or {}
  local pub, err = train.public_key(creator.rsa_public_key, "creator.rsa_public_key")
  if not pub then return nil, err end
  local wrapped, werr = pub:wrap(ctx.symkey)
  if not wrapped then return nil, "cannot wrap the key for the creator: " .. tostring(werr) end
  ctx.user_key = wrapped
  local ok, cerr = ctx.config:set_creator_key(hex(wrapped))
  if not ok then return nil, cerr end
  return ctx.config:validate()
end, { kind = "crypto" })

-- §8.7: one new layer with the whole /opt on the base chosen above.
wf:add("write_image", function(ctx)
  local w, err = ctx.image:writer({ base = ctx.base_image, keep_layers = ctx.keep_layers,
    tmpdir = ctx.options.tmpdir })
  if not w then return nil, "cannot start writing the image: " .. tostring(err) end
  for _, f in ipairs(ctx.train) do f.src = f.cipher end
  for _, f in ipairs(ctx.results) do f.src = f.cipher end
  local ok, werr = w:add_dir(train.OPT, { mode = 493 })
  if ok then ok, werr = w:add_bytes(train.CONFIG, ctx.config:to_json(), { mode = 420 }) end
  if ok then ok, werr = train.write_tree(w, train.TRAIN, ctx.train_entries, ctx.train) end
  if ok then ok, werr = train.write_tree(w, train.RESULTS, ctx.results_entries, ctx.results) end
  if ok then ok, werr = w:add_bytes(train.USER_KEY, ctx.user_key, { mode = 420 }) end
  -- A commit into an OCI layout also removes the blobs nothing references
  -- any more, among them the plaintext layer pre-run wrote.
  return train.commit(ctx, w, ok, werr, { history = "libpht post-run",
    comment = "signed and encrypted by station " .. ctx.stop.station })
end, { kind = "write", writes = true })

return wf
