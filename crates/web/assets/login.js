// Login form, then the change of a one-time password, then on to the dashboard.
"use strict";

const message = document.getElementById("message");
const loginForm = document.getElementById("login");
const changeForm = document.getElementById("change");
let oldPassword = "";

function say(text) {
  message.textContent = text;
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return body.message || body.error || response.statusText;
  } catch (_) {
    return response.status + " " + response.statusText;
  }
}

function askNewPassword() {
  loginForm.hidden = true;
  changeForm.hidden = false;
  document.getElementById("new-password").focus();
}

loginForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  say("");
  const user = document.getElementById("user").value;
  const password = document.getElementById("password").value;
  const response = await fetch("/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user, password }),
  });
  if (!response.ok) {
    say("Login failed: " + (await errorOf(response)));
    return;
  }
  const session = await response.json();
  if (session.must_change_password) {
    oldPassword = password;
    askNewPassword();
  } else {
    location.assign("/");
  }
});

changeForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  say("");
  const fresh = document.getElementById("new-password").value;
  if (fresh !== document.getElementById("repeat-password").value) {
    say("The two new passwords differ.");
    return;
  }
  const session = await fetch("/api/v1/session");
  if (!session.ok) {
    say("Session lost: " + (await errorOf(session)) + ". Log in again.");
    changeForm.hidden = true;
    loginForm.hidden = false;
    return;
  }
  const { csrf_token } = await session.json();
  const response = await fetch("/api/v1/password", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf_token },
    body: JSON.stringify({ old_password: oldPassword, new_password: fresh }),
  });
  if (!response.ok) {
    say("Password not changed: " + (await errorOf(response)));
    return;
  }
  location.assign("/");
});

// Coming back here with a session that still must change its password (e.g. after a
// reload): go straight to the new-password form; with a usable session, to the dashboard.
fetch("/api/v1/session").then(async (response) => {
  if (!response.ok) {
    document.getElementById("password").focus();
    return;
  }
  const session = await response.json();
  if (session.must_change_password) {
    say("Enter the one-time password once more, then choose a new one.");
  } else {
    location.assign("/");
  }
});
