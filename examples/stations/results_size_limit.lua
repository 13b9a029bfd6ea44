-- Station policy: refuse trains whose results are larger than this station
-- accepts: before decrypting them in pre-run, and before sealing them in
-- post-run (the algorithm produced too much).
--
--   pht pre-run IMAGE --script examples/stations/results_size_limit.lua
--
-- The limit is $PHT_MAX_RESULTS_BYTES (default 100 MiB), counted over every
-- regular file under /opt/pht_results (as stored: ciphertext in pre-run,
-- plaintext in post-run).
local DEFAULT = 100 * 1024 * 1024

local function limit()
  local v = os.getenv("PHT_MAX_RESULTS_BYTES")
  local n = tonumber(v or DEFAULT)
  if not n or n < 0 then error("PHT_MAX_RESULTS_BYTES must be a number of bytes, got " .. tostring(v)) end
  return n
end

-- ctx.results_entries is the listing check_results_files made.
local function check_results_size(ctx)
  local total, files = 0, 0
  for _, e in ipairs(ctx.results_entries or {}) do
    if e.type == "file" then total, files = total + e.size, files + 1 end
  end
  local max = limit()
  if total > max then
    return nil, string.format("the results hold %d bytes in %d file(s), over this station's limit of %d bytes",
      total, files, max)
  end
  return true
end

return {
  pre_run = function(wf)
    wf:insert_after("check_results_files", "check_results_size", check_results_size, { kind = "policy" })
  end,
  post_run = function(wf)
    wf:insert_after("check_results_files", "check_results_size", check_results_size, { kind = "policy" })
  end,
}
