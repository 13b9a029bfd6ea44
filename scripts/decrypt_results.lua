-- Decrypt-results: the train's creator reads the results (PROTOCOL.md §8,
-- last paragraph). The key is unwrapped with the creator's private key, the
-- results are decrypted into the private temporary directory and checked
-- against result_hash, result_signature and the last stop's chain digest;
-- only then is any plaintext written to the output directory.
--
-- Context in:  ctx.options.image, .key_path, .password, .out, .tmpdir
-- Context out: ctx.results ({path=, plain=}), ctx.last (the stop that signed last)
local workflow = require "pht.workflow"
local train = require "pht.train"
local steps = require "pht.steps"
local fs = require "pht.fs"

local wf = workflow.new("decrypt-results")

wf:add("open_image", steps.open_image, { kind = "io" })
wf:add("read_config", steps.read_config, { kind = "verify" })
wf:add("load_key", steps.load_key, { kind = "io" })

wf:add("check_creator_key", function(ctx)
  local creator = ctx.config:get("creator") or {}
  local pub, err = train.public_key(creator.rsa_public_key, "creator.rsa_public_key")
  if not pub then return nil, err end
  if pub:fingerprint() ~= ctx.key:fingerprint() then
    return nil, string.format("the private key (fingerprint %s) is not the creator's (%s)",
      ctx.key:fingerprint():sub(1, 16), pub:fingerprint():sub(1, 16))
  end
  return true
end, { kind = "verify" })

-- The stop that wrote the results: the last one that signed.
wf:add("find_last_stop", function(ctx)
  local stops = ctx.config:route()
  for pos = #stops, 1, -1 do
    if stops[pos].signature then
      ctx.last, ctx.last_pos, ctx.stops = stops[pos], pos, stops
      return true
    end
  end
  return nil, "no station has signed results yet"
end, { kind = "verify" })

wf:add("unwrap_key", function(ctx)
  local wrapped, err = train.unhex(ctx.config:get("creator").encrypted_key, "creator.encrypted_key")
  if not wrapped then return nil, err end
  local stored = ctx.image:stat(train.USER_KEY) and ctx.image:read_file(train.USER_KEY, 65536)
  if stored and stored ~= wrapped then
    return nil, train.USER_KEY .. " differs from creator.encrypted_key"
  end
  local symkey, uerr = ctx.key:unwrap(wrapped)
  if not symkey then return nil, "cannot unwrap the results key with the creator's key: " .. tostring(uerr) end
  ctx.symkey = symkey
  ctx:defer(function() symkey:close() end)
  return true
end, { kind = "verify" })

wf:add("check_results_files", steps.list_results, { kind = "verify" })

wf:add("decrypt_results", function(ctx)
  local tmp = ctx:tempdir()
  if #ctx.results_entries == 0 then return true end
  local root, err = train.extract(ctx.image, train.RESULTS, tmp, "results.enc")
  if not root then return nil, err end
  ctx.results_root = root
  return train.decrypt_all(ctx.symkey, ctx.results, root, tmp, "results")
end, { kind = "verify" })

wf:add("verify_result_hash", function(ctx)
  local e_d, err = train.check_results_hash(ctx.config, ctx.results)
  if not e_d then return nil, err end
  ctx.e_d = e_d
  return true
end, { kind = "verify" })

wf:add("verify_result_signature", function(ctx)
  return train.verify_result_signature(ctx.config, ctx.last, ctx.e_d, "the last to sign")
end, { kind = "verify" })

-- §9: the last stop's chain digest is the chain over the verified results,
-- and its chain signature verifies.
wf:add("verify_chain_digests", function(ctx)
  local ok, err = train.verify_chain_digest(ctx.config, ctx.stops, ctx.last_pos, ctx.e_d)
  if not ok then return nil, err end
  return train.verify_stop_signature(ctx.last)
end, { kind = "verify" })

wf:add("write_results", function(ctx)
  local out = ctx.options.out:gsub("(.)/+$", "%1")
  if fs.exists(out) then return nil, out .. " already exists: give a new directory" end
  -- Build the tree in a private directory beside `out` and rename it into
  -- place at the end: a failure half-way leaves no half-filled `out`.
  local stage, err = fs.mkdtemp(out:match("^(.*)/[^/]*$") or ".")
  if not stage then return nil, "cannot create a directory beside " .. out .. ": " .. tostring(err) end
  ctx:defer(function() if stage then fs.remove_tree(stage) end end)
  local ok
  for _, e in ipairs(ctx.results_entries) do
    if e.type == "dir" then
      ok, err = fs.mkdir_p(stage .. "/" .. e.path, 448)
      if not ok then return nil, "cannot create " .. out .. "/" .. e.path .. ": " .. tostring(err) end
    end
  end
  for _, f in ipairs(ctx.results) do
    local dst = stage .. "/" .. f.path
    -- Same filesystem: move; otherwise decrypt again straight into place.
    if not os.rename(f.plain, dst) then
      ok, err = ctx.symkey:decrypt_file(ctx.results_root .. "/" .. f.path, dst)
      if not ok then return nil, "cannot write " .. out .. "/" .. f.path .. ": " .. tostring(err) end
    end
  end
  ok, err = os.rename(stage, out)
  if not ok then return nil, "cannot move the results into " .. out .. ": " .. tostring(err) end
  stage = nil
  return true
end, { kind = "write", writes = true })

return wf
