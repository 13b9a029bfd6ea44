-- Decrypt-results: the train's creator reads the results (doc/protocol.md §8,
-- last paragraph). The key is unwrapped with the creator's private key, the
-- results are decrypted into the private temporary directory and checked
-- against result_hash, result_signature and the last stop's chain digest;
-- only then is any plaintext written to the output directory.
--
-- Context in:  ctx.options.image, .key_path, .password, .out, .tmpdir
-- Context out: ctx.results (pht.files records), ctx.last (the stop that signed last)
local workflow = require "pht.workflow"
local checks = require "pht.checks"
local field = require "pht.field"
local train = require "pht.train"
local steps = require "pht.steps"
local fs = require "pht.fs"

local wf = workflow.new("decrypt-results")

-- The output directory must be new: found before any work, not after it.
wf:add("check_output", function(ctx)
  local out = ctx.options.out and ctx.options.out:gsub("(.)/+$", "%1")
  if not out then return nil, "no output directory (options.out)" end
  if fs.exists(out) then return nil, out .. " already exists: give a new directory" end
  local parent = out:match("^(.*)/[^/]*$") or "."
  if parent ~= "" and not fs.exists(parent) then
    return nil, "cannot write " .. out .. ": " .. parent .. " does not exist"
  end
  return true
end, { kind = "io", protocol = "§8" })

wf:add("open_image", steps.open_image, { kind = "io", protocol = "§1" })
wf:add("read_config", steps.read_config, { kind = "verify", protocol = "§2" })
wf:add("load_key", steps.load_key, { kind = "io", protocol = "§6" })
wf:add("check_creator_key", steps.check_creator_key, { kind = "verify", protocol = "§9" })
wf:add("find_last_stop", steps.find_last_stop, { kind = "verify", protocol = "§8" })

-- The key wrapped for the creator, which /opt/user_sym_key.key repeats.
wf:add("unwrap_key", function(ctx)
  local wrapped, err = field.unhex(ctx.config:get("creator").encrypted_key, "creator.encrypted_key")
  if not wrapped then return nil, err end
  local ok, kerr = checks.user_key(ctx.image, wrapped)
  if not ok then return nil, kerr end
  return steps.unwrap(ctx, wrapped, "cannot unwrap the results key with the creator's key")
end, { kind = "verify", protocol = "§8" })

wf:add("check_results_files", steps.list_results, { kind = "verify", protocol = "§9" })

wf:add("decrypt_results", function(ctx)
  if #ctx.results_entries == 0 then return true end
  local root, err = steps.decrypt_tree(ctx, train.RESULTS, ctx.results, "results")
  if not root then return nil, err end
  ctx.results_root = root
  return true
end, { kind = "verify", protocol = "§8" })

wf:add("verify_result_hash", steps.verify_result_hash, { kind = "verify", protocol = "§7.5c" })

wf:add("verify_result_signature", function(ctx)
  return checks.result_signature(ctx.config, ctx.last, ctx.e_d, "the last to sign")
end, { kind = "verify", protocol = "§7.5d" })

-- The last stop's chain digest is the chain over the verified results, and
-- its chain signature verifies.
wf:add("verify_chain_digests", function(ctx)
  local ok, err = checks.stop_chain_digest(ctx.config, ctx.stops, ctx.last_pos, ctx.e_d)
  if ok then ok, err = checks.stop_signature(ctx.last) end
  return ok, err
end, { kind = "verify", protocol = "§9" })

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
      ok, err = fs.mkdir_p(stage .. "/" .. e.path, fs.MODE_PRIVATE_DIR)
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
end, { kind = "write", writes = true, protocol = "§8" })

return wf
