// Adding a passkey on the account page: ask the server for the options (the CSRF token in
// the X-CSRF-Token header), let the browser's WebAuthn call create the credential, put its
// answer in the form and submit it. A login too old for the service's rule goes to the
// re-login; any other failure posts the form empty, and the server says why in words.
const form = document.getElementById("passkey-add-form");
document.documentElement.classList.add("js");

async function ceremony(f) {
  const response = await fetch(f.dataset.options, {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRF-Token": f.querySelector('input[name="csrf"]').value },
  });
  if (response.status === 401) {
    window.location.assign(f.dataset.reauth);
    return null;
  }
  if (!response.ok) throw new Error("options refused: " + response.status);
  const options = PublicKeyCredential.parseCreationOptionsFromJSON(await response.json());
  const credential = await navigator.credentials.create({ publicKey: options });
  return JSON.stringify(credential.toJSON());
}

if (form && window.PublicKeyCredential && PublicKeyCredential.parseCreationOptionsFromJSON) {
  form.addEventListener("submit", async (event) => {
    const field = form.querySelector('input[name="credential"]');
    if (field.value) return; // the answer is in: let the form go
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    let answer = "";
    try {
      answer = await ceremony(form);
      if (answer === null) return; // on the way to the re-login
    } catch (err) {
      answer = "";
    }
    field.value = answer;
    button.disabled = false;
    form.submit();
  });
}
