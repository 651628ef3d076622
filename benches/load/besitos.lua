-- Besitos goals for one partner, a different filter per request so nothing
-- replays. Set API_KEY for the direct runs (a proxy injects the token itself).
local n = 0
local key = os.getenv("API_KEY")
request = function()
  n = n + 1
  local body = '{"subscribers":["LaQ1VYb5ANTAny25Ig"],"hours_to":' .. n .. '}'
  local headers = { ["Content-Type"] = "application/json" }
  if key then headers["Authorization"] = "Bearer " .. key end
  return wrk.format("POST", "/data/messages/bench/upcoming-goals", headers, body)
end
