// "Sign in with …": the OpenID Connect authorization-code flow with PKCE (RFC 7636), for the
// issuers the service lists at /dashboard/sign-in.json (those configured with a clientId).
// The dashboard is a public client: it holds no secret, so the code it gets back is bound to
// a one-time verifier kept in this tab (sessionStorage) and sent only to the token endpoint.
// `state` ties the answer to the request this tab made; `nonce` ties the ID token to it.
// The token obtained is kept like a pasted one, and the service verifies it on every call:
// nothing here is trusted for authorization, only for getting a token to the service.
"use strict";

const SignIn = (() => {
  const PENDING_KEY = "gpuinv.signin";  // {issuer, clientId, token, verifier, state, nonce}

  function randomText(bytes) {
    return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
  }

  function base64url(bytes) {
    let text = "";
    for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  async function challengeOf(verifier) {
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
    return base64url(digest);
  }

  // Where the issuer sends the browser back: this page, without its query.
  function redirectUri() {
    return `${location.origin}${location.pathname}`;
  }

  async function discover(issuer) {
    const url = `${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${issuer} did not answer its discovery document`);
    return response.json();
  }

  // The issuers offered on the sign-in form; none when the service lists none.
  async function options() {
    try {
      const response = await fetch("/dashboard/sign-in.json");
      return response.ok ? (await response.json()).issuers : [];
    } catch {
      return [];  // the pasted-token form still works
    }
  }

  // Leave for the issuer's login page.
  async function start(option) {
    const discovery = await discover(option.issuer);
    const pending = {
      issuer: option.issuer, clientId: option.clientId, token: option.token,
      verifier: randomText(32), state: randomText(16), nonce: randomText(16),
      tokenEndpoint: discovery.token_endpoint,
    };
    sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
    const query = new URLSearchParams({
      response_type: "code", client_id: option.clientId, redirect_uri: redirectUri(),
      scope: "openid profile email", state: pending.state, nonce: pending.nonce,
      code_challenge: await challengeOf(pending.verifier), code_challenge_method: "S256",
    });
    location.assign(`${discovery.authorization_endpoint}?${query}`);
  }

  function claimsOf(jwt) {
    const payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload));
  }

  // Back from the issuer: the token, or null when this page was not opened by a sign-in.
  // Throws (with a message for the form) when the sign-in failed or was tampered with.
  async function finish() {
    const query = new URLSearchParams(location.search);
    if (!query.has("code") && !query.has("error")) return null;
    const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) || "null");
    sessionStorage.removeItem(PENDING_KEY);
    history.replaceState(null, "", redirectUri());  // the code is single-use: drop it from the URL
    if (!pending || query.get("state") !== pending.state) {
      throw new Error("Sign-in refused: the answer does not belong to a sign-in started here.");
    }
    if (query.has("error")) {
      throw new Error(`Sign-in failed at the issuer: ${query.get("error_description") || query.get("error")}`);
    }
    const response = await fetch(pending.tokenEndpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code", code: query.get("code"), redirect_uri: redirectUri(),
        client_id: pending.clientId, code_verifier: pending.verifier,
      }),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(`Sign-in failed at the issuer: ${answer.error_description || answer.error || response.status}`);
    }
    if (answer.id_token && claimsOf(answer.id_token).nonce !== pending.nonce) {
      throw new Error("Sign-in refused: the ID token was not issued for this sign-in.");
    }
    const token = answer[pending.token];
    if (!token) throw new Error(`Sign-in failed: the issuer sent no ${pending.token}.`);
    return token;
  }

  function hostOf(issuer) {
    const url = new URL(issuer);
    return `${url.host}${url.pathname.replace(/\/$/, "")}`;
  }

  // One button per issuer, in the given container (emptied first).
  function offer(container, issuers, onError) {
    container.replaceChildren();
    for (const option of issuers) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "issuer";
      button.textContent = `Sign in with ${hostOf(option.issuer)}`;
      button.addEventListener("click", () => start(option).catch((error) => onError(error.message)));
      container.append(button);
    }
  }

  return { options, finish, offer };
})();
