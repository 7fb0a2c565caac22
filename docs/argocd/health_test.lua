-- Runs health.lua (the Argo CD health check) against sample IotRelays, as Argo CD does: `obj` is a global and
-- the script returns `hs`. Usage: lua5.4 docs/argocd/health_test.lua  (exit status 1 on any failure)
local dir = arg[0]:match("(.*/)") or "./"
local chunk = assert(loadfile(dir .. "health.lua"))

local function cond(t, s, reason, message)
  return { type = t, status = s, reason = reason, message = message or "" }
end
local function relay(generation, status)
  return { apiVersion = "iotrelay.dev/v1alpha1", kind = "IotRelay", metadata = { name = "plant-7", generation = generation }, status = status }
end

local cases = {
  { "no status yet", relay(1, nil), "Progressing" },
  { "old generation", relay(3, { observedGeneration = 2, conditions = { cond("Ready", "True", "TunnelEstablished") } }), "Progressing" },
  { "pod rolling out", relay(1, { observedGeneration = 1, conditions = {
      cond("Reconciling", "True", "PodPending", "waiting for the relay pod"), cond("Stalled", "False", "Progressing"),
      cond("Ready", "False", "PodPending") } }), "Progressing" },
  { "unschedulable (port conflict) is progressing, not failed", relay(1, { observedGeneration = 1, conditions = {
      cond("Reconciling", "True", "Unschedulable", "0/1 nodes are available: 1 node(s) didn't have free ports"),
      cond("Ready", "False", "Unschedulable") } }), "Progressing" },
  { "connecting", relay(1, { observedGeneration = 1, conditions = {
      cond("Reconciling", "False", "PodAvailable"), cond("Stalled", "False", "PodAvailable"),
      cond("Ready", "False", "Connecting", "IKE_SA_INIT sent") } }), "Progressing" },
  { "both tunnels up", relay(2, { observedGeneration = 2, tunnelsUp = "2/2", conditions = {
      cond("Reconciling", "False", "PodAvailable"), cond("Stalled", "False", "PodAvailable"),
      cond("Ready", "True", "TunnelEstablished", "tunnel1 active"), cond("Degraded", "False", "AllTunnelsUp") } }), "Healthy" },
  { "one tunnel down", relay(2, { observedGeneration = 2, tunnelsUp = "1/2", conditions = {
      cond("Ready", "True", "TunnelEstablished"), cond("Degraded", "True", "TunnelDown", "tunnel1: DPD timeout") } }), "Degraded" },
  { "missing secret", relay(1, { observedGeneration = 1, conditions = {
      cond("Reconciling", "False", "SecretNotFound"), cond("Stalled", "True", "SecretNotFound", "Secret \"aws-vpn\" not found") } }), "Degraded" },
  { "authentication failed", relay(1, { observedGeneration = 1, conditions = {
      cond("Stalled", "True", "AuthenticationFailed", "peer sent AUTHENTICATION_FAILED"), cond("Ready", "False", "AuthenticationFailed") } }), "Degraded" },
}

local failed = 0
for _, c in ipairs(cases) do
  local name, o, want = c[1], c[2], c[3]
  obj = o
  hs = nil
  local ok, got = pcall(chunk)
  if not ok then
    print("FAIL " .. name .. ": error " .. tostring(got)); failed = failed + 1
  elseif type(got) ~= "table" or got.status ~= want or type(got.message) ~= "string" then
    print("FAIL " .. name .. ": want " .. want .. ", got " .. tostring(got and got.status) .. " (" .. tostring(got and got.message) .. ")")
    failed = failed + 1
  else
    print("PASS " .. name .. ": " .. got.status .. " - " .. got.message)
  end
end
print(string.format("%d passed, %d failed", #cases - failed, failed))
os.exit(failed == 0 and 0 or 1)
