// The passkey ceremony of the sign-in pages: ask the server for the options, let the
// browser's WebAuthn call answer, put the answer in the form and submit it. Without
// JavaScript the form posts empty and the server says that a passkey needs it.
const form = document.getElementById("passkey-form");
document.documentElement.classList.add("js");

function csrfOf(f) {
  return f.querySelector('input[name="csrf"]').value;
}

async function ceremony(f) {
  const response = await fetch(f.dataset.options, {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRF-Token": csrfOf(f) },
  });
  if (!response.ok) throw new Error("options refused: " + response.status);
  const options = PublicKeyCredential.parseRequestOptionsFromJSON(await response.json());
  const credential = await navigator.credentials.get({ publicKey: options });
  return JSON.stringify(credential.toJSON());
}

if (form && window.PublicKeyCredential && PublicKeyCredential.parseRequestOptionsFromJSON) {
  form.addEventListener("submit", async (event) => {
    const field = form.querySelector('input[type="hidden"]:not([name="csrf"]):not([name="next"])');
    if (field.value) return; // the answer is in: let the form go
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      field.value = await ceremony(form);
    } catch (err) {
      field.value = "";
    }
    button.disabled = false;
    form.submit();
  });
}
