/** A minimal event emitter: listeners per name, `on` returns its own unsubscribe function. */
export type Listener = (...args: any[]) => void;

export class Emitter {
  private readonly listeners = new Map<string, Set<Listener>>();

  on(name: string, listener: Listener): () => void {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
    };
  }

  emit(name: string, ...args: unknown[]): void {
    // A copy, so a listener that unsubscribes (or subscribes) while being called does not disturb this round.
    for (const listener of [...(this.listeners.get(name) ?? [])]) {
      try {
        listener(...args);
      } catch (error) {
        // One failing listener must not starve the others or break the socket loop; the error still surfaces.
        setTimeout(() => {
          throw error;
        });
      }
    }
  }
}
