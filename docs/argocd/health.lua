-- Argo CD health check for iotrelay.dev/IotRelay
-- (argocd-cm: resource.customizations.health.iotrelay.dev_IotRelay).
-- Reads the kstatus-style conditions the operator writes, Stalled (bad spec, missing Secret, the relay's
-- authentication failed or no proposal chosen), Reconciling and Ready, and the relay's Degraded (a tunnel is down).
hs = { status = "Progressing", message = "Waiting for the operator to report status" }

local function find(conditions, t)
  for _, c in ipairs(conditions or {}) do
    if c.type == t then return c end
  end
  return nil
end

local function say(c, fallback)
  if c == nil then return fallback end
  local m = c.message or ""
  if m == "" then m = fallback end
  if c.reason ~= nil and c.reason ~= "" then return c.reason .. ": " .. m end
  return m
end

if obj.status ~= nil then
  local st = obj.status
  local generation = obj.metadata and obj.metadata.generation
  if generation ~= nil and (st.observedGeneration == nil or st.observedGeneration < generation) then
    hs.status = "Progressing"
    hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
    return hs
  end
  local stalled = find(st.conditions, "Stalled")
  local reconciling = find(st.conditions, "Reconciling")
  local ready = find(st.conditions, "Ready")
  local degraded = find(st.conditions, "Degraded")
  if stalled ~= nil and stalled.status == "True" then
    hs.status = "Degraded"
    hs.message = say(stalled, "Stalled")
  elseif ready ~= nil and ready.status == "True" and degraded ~= nil and degraded.status == "True" then
    hs.status = "Degraded"
    hs.message = say(degraded, "A tunnel is down; traffic uses the other one")
  elseif ready ~= nil and ready.status == "True" then
    hs.status = "Healthy"
    hs.message = say(ready, "Ready")
    if st.tunnelsUp ~= nil then hs.message = hs.message .. " (tunnels " .. st.tunnelsUp .. ")" end
  elseif reconciling ~= nil and reconciling.status == "True" then
    hs.status = "Progressing"
    hs.message = say(reconciling, "Reconciling")
  else
    hs.status = "Progressing"
    hs.message = say(ready, "Waiting for the relay to become Ready")
  end
end
return hs
