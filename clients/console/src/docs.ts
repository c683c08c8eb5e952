/**
 * The API reference (`/docs`): the hub's own `/openapi.json` in Swagger UI (served from this hub, from the
 * swagger-ui-dist package), and the WebSocket protocol from `/docs/protocol.json`, which the hub renders from the
 * Rust types bellhop-client's types are generated from.
 */
import { api, byId, el, errorText, say } from './common.js';

interface ProtocolReference {
  actions: Array<{ name: string; request: string; ack: string }>;
  events: Array<{ name: string; data: string }>;
  errorCodes: string[];
  types: Array<{ name: string; declaration: string }>;
}

declare global {
  interface Window {
    SwaggerUIBundle?: (options: Record<string, unknown>) => unknown;
  }
}

function swagger(): void {
  const bundle = window.SwaggerUIBundle;
  if (!bundle) {
    say(byId('swagger'), 'Swagger UI did not load (/assets/swagger-ui-bundle.js).', true);
    return;
  }
  bundle({
    url: '/openapi.json',
    dom_id: '#swagger',
    // The default validator is a public web service: nothing here may leave this hub.
    validatorUrl: null,
    docExpansion: 'list',
    defaultModelsExpandDepth: 0,
    tryItOutEnabled: false,
  });
}

/** A type name linked to its declaration below, or plain text for `undefined`. */
function typeLink(name: string, known: Set<string>): Node {
  return known.has(name) ? el('a', { href: `#type-${name}`, class: 'mono' }, name) : el('span', { class: 'mono muted' }, name);
}

async function protocol(): Promise<void> {
  try {
    const reference = await api<ProtocolReference>('GET', '/docs/protocol.json');
    const known = new Set(reference.types.map((t) => t.name));
    byId('actions').querySelector('tbody')!.replaceChildren(
      ...reference.actions.map((action) =>
        el('tr', { id: `action-${action.name}` }, el('td', { class: 'mono' }, action.name), el('td', {}, typeLink(action.request, known)), el('td', {}, typeLink(action.ack, known))),
      ),
    );
    byId('events').querySelector('tbody')!.replaceChildren(
      ...reference.events.map((event) => el('tr', { id: `event-${event.name}` }, el('td', { class: 'mono' }, event.name), el('td', {}, typeLink(event.data, known)))),
    );
    byId('error-codes').replaceChildren(...reference.errorCodes.map((code) => el('li', { class: 'mono' }, code)));
    byId('types').replaceChildren(
      ...reference.types.map((type) => el('div', { id: `type-${type.name}`, class: 'type' }, el('h4', { class: 'mono' }, type.name), el('pre', {}, type.declaration))),
    );
  } catch (error) {
    say(byId('protocol-status'), `the protocol reference could not be loaded: ${errorText(error)}`, true);
  }
}

swagger();
void protocol();
