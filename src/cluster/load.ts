import { ClusterState, type KubeObject } from './cluster-state.js';
import { ObjectError } from './model.js';

/** Builds a state from a list of objects; invalid ones are reported and skipped, never fatal. */
export function loadState(objects: KubeObject[], nodeName: string): { state: ClusterState; errors: ObjectError[] } {
  const state = new ClusterState(nodeName);
  const errors: ObjectError[] = [];
  for (const object of objects) {
    try {
      state.apply(object);
    } catch (error) {
      if (!(error instanceof ObjectError)) throw error;
      errors.push(error);
    }
  }
  return { state, errors };
}
