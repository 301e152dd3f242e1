// The text box under the transcript: a typed message is a turn like a spoken one.
// Enter (the form's submit) sends it; the box is usable only while the call's data
// channel is open.

export class TextBox {
  // ui: {form, input, send}; onSend(text) -> true when the message went out.
  constructor(ui, onSend) {
    this.ui = ui;
    ui.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (onSend(ui.input.value)) ui.input.value = "";
      ui.input.focus();
    });
    this.enable(false);
  }

  enable(on) {
    this.ui.input.disabled = !on;
    this.ui.send.disabled = !on;
  }
}
