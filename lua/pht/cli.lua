-- The `pht` command line (see doc/cli.md).
local M = {}

function M.main(args)
  io.stderr:write("pht: no verbs yet\n")
  return 64
end

return M
