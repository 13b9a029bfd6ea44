-- Pre-run: what a station does before the train runs (PROTOCOL.md §7, with
-- the stricter checks of §9 as steps of their own). Each step is named for
-- what it checks; the name is what an operator sees when the train is
-- rejected. A station changes this list by name in its own script (see
-- doc/workflow.md) rather than by copying this file.
--
-- Context in:  ctx.options.image (ref), .output (ref, default: in place),
--              .station, .key_path, .password, .tmpdir
-- Context out: ctx.config, ctx.stop, ctx.symkey, ctx.e_h, ctx.e_d,
--              ctx.train and ctx.results ({path=, plain=} in hashing order)
local workflow = require "pht.workflow"
local train = require "pht.train"
local steps = require "pht.steps"

local skip = workflow.skip
local wf = workflow.new("pre-run")

-- The train and the station ------------------------------------------------------

wf:add("open_image", steps.open_image, { kind = "io" })

wf:add("check_not_decrypted", function(ctx)
  if train.pre_run_layer(ctx.image) then
    return nil, "this image was already decrypted by pre-run: it holds plaintext, not a train to verify"
  end
  return true
end, { kind = "verify" })

wf:add("read_config", steps.read_config, { kind = "verify" })
wf:add("load_key", steps.load_key, { kind = "io" })
wf:add("find_station", steps.find_station, { kind = "verify" })          -- §7.1
wf:add("check_station_key", steps.check_station_key, { kind = "verify" })
wf:add("check_turn", steps.check_turn, { kind = "verify" })              -- §9

-- §7.2: the symmetric key ---------------------------------------------------------

wf:add("unwrap_key", function(ctx)
  local wrapped, err = train.unhex(ctx.stop.encrypted_key, "the encrypted key of station " .. ctx.stop.station)
  if not wrapped then return nil, err end
  local symkey, uerr = ctx.key:unwrap(wrapped)
  if not symkey then return nil, "cannot unwrap the symmetric key with the station's key: " .. tostring(uerr) end
  ctx.symkey = symkey
  ctx:defer(function() symkey:close() end)
  return true
end, { kind = "verify" })

-- §7.3-4: the immutable files -------------------------------------------------------

wf:add("check_immutable_files", steps.check_immutable_files, { kind = "verify" })  -- §9

wf:add("decrypt_train", function(ctx)
  local tmp = ctx:tempdir()
  local root, err = train.extract(ctx.image, train.TRAIN, tmp, "train.enc")
  if not root then return nil, err end
  return train.decrypt_all(ctx.symkey, ctx.train, root, tmp, "train")
end, { kind = "verify" })

wf:add("verify_immutable_hash", steps.verify_immutable_hash, { kind = "verify" })

wf:add("verify_creator_signature", function(ctx)
  local creator = ctx.config:get("creator") or {}
  local pub, err = train.public_key(creator.rsa_public_key, "creator.rsa_public_key")
  if not pub then return nil, err end
  local sig, serr = train.unhex(ctx.config:get("signature"), "signature")
  if not sig then return nil, serr end
  local ok, verr = pub:verify(ctx.e_h, sig)
  if ok == nil then return nil, "cannot check the creator's signature: " .. tostring(verr) end
  if not ok then return nil, "the creator's signature does not verify over e_h" end
  return true
end, { kind = "verify" })

wf:add("verify_build_signature", function(ctx)
  local build = ctx.config:get("build") or {}
  local pub, err = train.public_key(build.rsa_public_key, "build.rsa_public_key")
  if not pub then return nil, err end
  local sig, serr = train.unhex(build.signature, "build.signature")
  if not sig then return nil, serr end
  local creator_sig = train.unhex(ctx.config:get("signature"), "signature")
  local ok, verr = pub:verify(ctx.e_h .. creator_sig, sig)
  if ok == nil then return nil, "cannot check the build signature: " .. tostring(verr) end
  if not ok then return nil, "the builder's signature does not verify over e_h and the creator's signature" end
  return true
end, { kind = "verify" })

-- §7.5: the results of the stations before ----------------------------------------------

local function first_stop(ctx) return ctx.pos == 1 end

wf:add("verify_previous_signatures", function(ctx)
  if first_stop(ctx) then return skip("first stop: no earlier station signed") end
  for pos = 1, ctx.pos - 1 do
    local ok, err = train.verify_stop_signature(ctx.stops[pos])
    if not ok then return nil, err end
  end
  return true
end, { kind = "verify" })

wf:add("check_results_files", function(ctx)
  local ok, err = steps.list_results(ctx)
  if not ok then return nil, err end
  if first_stop(ctx) and #ctx.results > 0 then
    return nil, string.format("result_hash is null but %s holds %d file(s) nobody signed",
      train.RESULTS, #ctx.results)
  end
  return true
end, { kind = "verify" })

wf:add("decrypt_results", function(ctx)
  if first_stop(ctx) then return skip("first stop: no results yet") end
  local tmp = ctx:tempdir()
  local root, err = train.extract(ctx.image, train.RESULTS, tmp, "results.enc")
  if not root then return nil, err end
  return train.decrypt_all(ctx.symkey, ctx.results, root, tmp, "results")
end, { kind = "verify" })

wf:add("verify_result_hash", function(ctx)
  if first_stop(ctx) then return skip("first stop: no results yet") end
  local e_d, err = train.check_results_hash(ctx.config, ctx.results)
  if not e_d then return nil, err end
  ctx.e_d = e_d
  return true
end, { kind = "verify" })

wf:add("verify_result_signature", function(ctx)
  if first_stop(ctx) then return skip("first stop: no results yet") end
  return train.verify_result_signature(ctx.config, ctx.stops[ctx.pos - 1], ctx.e_d, "the stop before")
end, { kind = "verify" })

-- §9: the previous stop's digest is the chain over the verified results.
wf:add("verify_chain_digests", function(ctx)
  if first_stop(ctx) then return skip("first stop: no chain yet") end
  return train.verify_chain_digest(ctx.config, ctx.stops, ctx.pos - 1, ctx.e_d)
end, { kind = "verify" })

-- §7.6: the plaintext goes into a new, marked layer; the image must not leave
-- the station now. Post-run drops this layer and everything above it.

wf:add("write_image", function(ctx)
  local w, err = ctx.image:writer({ tmpdir = ctx.options.tmpdir })
  if not w then return nil, "cannot start writing the image: " .. tostring(err) end
  -- The plaintext carries mtime 0, as the reference writes it. A train that
  -- rewrites a result then always changes its mtime, so a daemon whose
  -- layer diff compares size and mtime in seconds (the vfs driver) cannot
  -- miss a rewrite of the same size within the same second.
  for _, f in ipairs(ctx.train) do f.src = f.plain end
  local ok, werr = train.write_tree(w, train.TRAIN, ctx.train_entries, ctx.train, 0)
  if ok and not first_stop(ctx) then
    for _, f in ipairs(ctx.results) do f.src = f.plain end
    ok, werr = train.write_tree(w, train.RESULTS, ctx.results_entries, ctx.results, 0)
  end
  return train.commit(ctx, w, ok, werr, { history = train.PRE_RUN_MARK,
    comment = "decrypted for station " .. ctx.stop.station .. ": plaintext, never push this image" })
end, { kind = "write", writes = true })

return wf
