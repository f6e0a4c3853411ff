/** Projects and their members (backend/projects/router.py). */
import { json, request, send } from "./client";
import type { Member, Project, Role, Schema, User } from "./types";

/** Settings as the settings page builds them, by a key path each: nested like the server's
 * `ProjectSettings`, holding only the keys that changed (the server checks each, 422 naming it). */
export type SettingsPatch = { [key: string]: number | boolean | null | SettingsPatch };
/** What a PATCH may carry: only what changed; `settings` merges key by key on the server. */
export type ProjectPatch = Omit<Schema<"ProjectUpdate">, "settings"> & { settings?: SettingsPatch };

export const listProjects = (includeArchived = false) =>
  json<Project[]>(`/api/projects${includeArchived ? "?include_archived=true" : ""}`);

export const createProject = (body: Omit<Schema<"ProjectCreate">, "settings"> & { settings?: SettingsPatch }) =>
  json<Project>("/api/projects", send("POST", body));

export const updateProject = (projectId: number, patch: ProjectPatch) =>
  json<Project>(`/api/projects/${projectId}`, send("PATCH", patch));

const members = (projectId: number) => `/api/projects/${projectId}/members`;

export const listMembers = (projectId: number) => json<Member[]>(members(projectId));

/** `roleInProject` null: their global role applies in the project. */
export const addMember = (projectId: number, userId: number, roleInProject: Role | null) =>
  json<Member>(members(projectId), send("POST", { user_id: userId, role_in_project: roleInProject } satisfies Schema<"MemberAdd">));

/** A member's role in the project changes, but is never cleared back to null (the server refuses it). */
export const changeMemberRole = (projectId: number, userId: number, roleInProject: Role) =>
  json<Member>(`${members(projectId)}/${userId}`, send("PATCH", { role_in_project: roleInProject } satisfies Schema<"MemberUpdate">));

export async function removeMember(projectId: number, userId: number): Promise<void> {
  await request(`${members(projectId)}/${userId}`, send("DELETE"));
}

/** The user's rights in the project: admin everywhere, else their role there (README, Security model). */
export function roleIn(user: User, projectMembers: Member[]): Role | null {
  if (user.role === "admin") return "admin";
  const member = projectMembers.find((m) => m.user_id === user.id);
  return member ? (member.role_in_project ?? member.role) : null;
}

export const manages = (role: Role | null): boolean => role === "admin" || role === "manager";
